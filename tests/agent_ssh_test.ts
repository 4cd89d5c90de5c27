/**
 * guest-ssh-get/add/remove-authorized-keys and guest-set-user-password on a throw-away local
 * user (created with useradd, home in a temp dir, removed afterwards): demu's agent beside the
 * real qemu-ga, replies and the resulting authorized_keys (content, mode, owner) compared.
 * No password of any real account is touched: the password is set on the temp user only.
 */
import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { canonical, findQemuGa, RawConn, startAgent } from "../agent/testing.ts";

async function ok(cmd: string, args: string[]): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
}

const KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1 alice@example";
const KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB2 bob@example";
const KEY_C = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC3 carol@example";

Deno.test("agent: ssh authorized keys and user password on a temp user, demu beside qemu-ga", async () => {
  if (Deno.uid() !== 0) {
    console.warn("\n!!! WARNING: not root: ssh-keys/password tests SKIPPED !!!\n");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "agent-ssh-" });
  const user = `dq${crypto.randomUUID().slice(0, 8)}`;
  const home = `${dir}/home`;
  if (!(await ok("useradd", ["-M", "-d", home, "-s", "/usr/sbin/nologin", user]))) {
    await Deno.remove(dir, { recursive: true });
    console.warn("\n!!! WARNING: useradd failed: ssh-keys/password tests SKIPPED !!!\n");
    return;
  }
  try {
    await Deno.mkdir(home);
    const passwd = (await Deno.readTextFile("/etc/passwd")).split("\n")
      .find((l) => l.startsWith(`${user}:`))!.split(":");
    const [uid, gid] = [Number(passwd[2]), Number(passwd[3])];
    await Deno.chown(home, uid, gid);
    const whos = findQemuGa() ? ["qemu-ga", "demu"] as const : ["demu"] as const;
    const results: unknown[] = [];
    for (const who of whos) {
      await Deno.remove(`${home}/.ssh`, { recursive: true }).catch(() => {});
      const agent = await startAgent(who);
      const c = await RawConn.open(agent.socket);
      const out: unknown[] = [];
      const call = async (execute: string, args: object) =>
        out.push(canonical(await c.call({ execute, arguments: args })));
      try {
        await call("guest-ssh-get-authorized-keys", { username: user });
        await call("guest-ssh-remove-authorized-keys", { username: user, keys: [KEY_A] });
        await call("guest-ssh-add-authorized-keys", { username: user, keys: [KEY_A, KEY_B] });
        await call("guest-ssh-get-authorized-keys", { username: user });
        await call("guest-ssh-add-authorized-keys", { username: user, keys: [KEY_B, KEY_C] });
        await call("guest-ssh-get-authorized-keys", { username: user });
        await call("guest-ssh-remove-authorized-keys", { username: user, keys: [KEY_B, "x y"] });
        await call("guest-ssh-get-authorized-keys", { username: user });
        const st = await Deno.stat(`${home}/.ssh/authorized_keys`);
        const dst = await Deno.stat(`${home}/.ssh`);
        out.push([st.mode! & 0o777, st.uid, st.gid, dst.mode! & 0o777, dst.uid]);
        out.push(await Deno.readTextFile(`${home}/.ssh/authorized_keys`));
        await call("guest-ssh-add-authorized-keys", { username: user, keys: [KEY_C], reset: true });
        await call("guest-ssh-get-authorized-keys", { username: user });
        await call("guest-ssh-add-authorized-keys", { username: user, keys: [] });
        await call("guest-ssh-add-authorized-keys", { username: "nouser-demu", keys: [KEY_A] });
        await call("guest-ssh-add-authorized-keys", { username: user, keys: "x" });
        // chpasswd on the temp user: plain and pre-crypted.
        await call("guest-set-user-password", {
          username: user,
          password: btoa("s3cret"),
          crypted: false,
        });
        await call("guest-set-user-password", {
          username: user,
          password: btoa(
            "$6$salt$Mq0.r3pcJW3/lqfEzGt3eCfWNQ0n1JBu5pjnWP3DyAn4D3V8V4fHZUd3GLKxyHq9l0S8JxXhrgAN1QQD5yRs71",
          ),
          crypted: true,
        });
      } finally {
        await c.close();
        await agent.stop();
      }
      results.push(out);
    }
    if (results.length > 1) deepStrictEqual(results[1], results[0]);
    const demu = results.at(-1) as unknown[];
    // Listed last line first, as qemu-ga does.
    deepStrictEqual(demu[3], { return: { keys: [KEY_B, KEY_A] } });
    deepStrictEqual(demu[7], { return: { keys: [KEY_C, KEY_A] } });
    deepStrictEqual(demu[8], [0o600, uid, gid, 0o700, uid]);
    deepStrictEqual(demu[11], { return: { keys: [KEY_C] } });
    strictEqual((demu.at(-1) as { return?: unknown }).return !== undefined, true);
  } finally {
    await ok("userdel", [user]);
    await Deno.remove(dir, { recursive: true });
  }
});
