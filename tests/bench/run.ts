/**
 * `deno task bench`: runs every benchmark module in this directory (files named *_bench.ts, each
 * exporting `bench(args)`), or only those whose names contain one of the given words.
 *
 *   deno task bench              # all
 *   deno task bench qemu_img     # only qemu_img_bench.ts
 */
const dir = new URL(".", import.meta.url);
const filters = Deno.args;
const modules = [...Deno.readDirSync(dir)]
  .filter((e) => e.isFile && e.name.endsWith("_bench.ts"))
  .map((e) => e.name)
  .filter((n) => !filters.length || filters.some((f) => n.includes(f)))
  .sort();
if (!modules.length) console.error(`no benchmark matches ${filters.join(" ")}`);
for (const name of modules) {
  console.log(`== ${name}`);
  const mod = await import(new URL(name, dir).href);
  if (typeof mod.bench !== "function") {
    console.error(`${name}: exports no bench() function; skipped`);
    continue;
  }
  await mod.bench(filters);
}
