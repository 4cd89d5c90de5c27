/**
 * guest-network-get-interfaces (every interface in /sys/class/net by ifindex, its MAC, its
 * addresses and, for addressed interfaces, /proc/net/dev counters) and
 * guest-network-get-route (/proc/net/route and /proc/net/ipv6_route).
 */
import type { CommandDef } from "../agent.ts";
import { QgaError } from "../errors.ts";

function readTrim(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

/** /proc/net/dev counters per interface, with the names the QGA schema gives them. */
function devStats(): Map<string, Record<string, number>> {
  const out = new Map<string, Record<string, number>>();
  const text = readTrim("/proc/net/dev") ?? "";
  for (const line of text.split("\n").slice(2)) {
    const i = line.indexOf(":");
    if (i < 0) continue;
    const v = line.slice(i + 1).trim().split(/\s+/).map(Number);
    out.set(line.slice(0, i).trim(), {
      "rx-bytes": v[0],
      "rx-packets": v[1],
      "rx-errs": v[2],
      "rx-dropped": v[3],
      "tx-bytes": v[8],
      "tx-packets": v[9],
      "tx-errs": v[10],
      "tx-dropped": v[11],
    });
  }
  return out;
}

function interfaces(): Record<string, unknown>[] {
  let names: string[];
  try {
    names = [...Deno.readDirSync("/sys/class/net")].map((e) => e.name);
  } catch (e) {
    throw new QgaError(`getifaddrs failed: ${(e as Error).message}`);
  }
  const index = (n: string) => Number(readTrim(`/sys/class/net/${n}/ifindex`) ?? 1e9);
  names.sort((a, b) => index(a) - index(b));
  const addrs = Deno.networkInterfaces();
  const stats = devStats();
  return names.map((name) => {
    const iface: Record<string, unknown> = { name };
    const mac = readTrim(`/sys/class/net/${name}/address`);
    if (mac && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) iface["hardware-address"] = mac;
    const ips = addrs.filter((a) => a.name === name).map((a) => ({
      "ip-address-type": a.family === "IPv4" ? "ipv4" : "ipv6",
      "ip-address": a.address,
      prefix: Number(a.cidr.split("/")[1] ?? 0),
    }));
    if (ips.length) {
      iface["ip-addresses"] = ips;
      const s = stats.get(name);
      if (s) iface.statistics = s;
    }
    return iface;
  });
}

/** A little-endian hex IPv4 address from /proc/net/route, dotted. */
function ipv4(hex: string): string {
  const n = parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join(".");
}

/** A 32-hex-digit IPv6 address from /proc/net/ipv6_route, in the usual compressed form. */
export function ipv6(hex: string): string {
  const groups = hex.match(/.{4}/g)!.map((g) => parseInt(g, 16).toString(16));
  // Compress the longest run of zero groups (at least two), as inet_ntop does.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen && j - i >= 2) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

function routes(): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const v4 = readTrim("/proc/net/route");
  for (const line of (v4 ?? "").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 11) continue;
    out.push({
      iface: f[0],
      destination: ipv4(f[1]),
      gateway: ipv4(f[2]),
      flags: parseInt(f[3], 16),
      refcnt: Number(f[4]),
      use: Number(f[5]),
      metric: Number(f[6]),
      mask: ipv4(f[7]),
      mtu: Number(f[8]),
      window: Number(f[9]),
      irtt: Number(f[10]),
      version: 4,
    });
  }
  const v6 = readTrim("/proc/net/ipv6_route");
  for (const line of (v6 ?? "").split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    out.push({
      iface: f[9],
      destination: ipv6(f[0]),
      desprefixlen: String(parseInt(f[1], 16)),
      source: ipv6(f[2]),
      srcprefixlen: String(parseInt(f[3], 16)),
      nexthop: ipv6(f[4]),
      metric: parseInt(f[5], 16),
      refcnt: parseInt(f[6], 16),
      use: parseInt(f[7], 16),
      flags: parseInt(f[8], 16),
      version: 6,
    });
  }
  return out;
}

export const networkCommands: CommandDef[] = [
  { name: "guest-network-get-interfaces", run: () => interfaces() },
  { name: "guest-network-get-route", run: () => routes() },
];
