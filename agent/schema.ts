/**
 * Argument types of the QGA schema and their validation, with the wording of QEMU's QObject
 * input visitor ("Parameter 'x' is missing", "Invalid parameter type for 'vcpus[0].online',
 * expected: boolean", ...). Fields are checked in schema order, then unexpected members.
 */
import { JsonFloat, type JsonValue } from "./json.ts";
import { QgaError } from "./errors.ts";

/** One argument type. */
export type ArgType =
  | "int"
  | "uint64"
  | "str"
  | "bool"
  | "number"
  | { enum: string; values: readonly string[] }
  | { list: ArgType }
  | { struct: Fields }
  | { alternate: string; int?: true; bool?: true; enum?: { values: readonly string[] } };

/** A struct's members; an optional member's name starts with "*" as in the schema. */
export type Fields = Record<string, ArgType>;

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

function fail(message: string): never {
  throw new QgaError(message);
}

function isInteger(v: JsonValue): v is number | bigint {
  return (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
}

function isObject(v: JsonValue): v is { [key: string]: JsonValue } {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof JsonFloat);
}

/** Checks one value against a type; returns it in handler form (numbers unwrapped). */
export function checkValue(type: ArgType, v: JsonValue, name: string): unknown {
  const wrong = (expected: string): never =>
    fail(`Invalid parameter type for '${name}', expected: ${expected}`);
  if (typeof type === "string") {
    switch (type) {
      case "int":
        if (!isInteger(v) || BigInt(v) < INT64_MIN || BigInt(v) > INT64_MAX) wrong("integer");
        return v;
      case "uint64":
        if (!isInteger(v) || BigInt(v) > UINT64_MAX) wrong("uint64");
        return typeof v === "bigint" && v < 0n ? v + (1n << 64n) : v;
      case "str":
        if (typeof v !== "string") wrong("string");
        return v;
      case "bool":
        if (typeof v !== "boolean") wrong("boolean");
        return v;
      case "number":
        if (v instanceof JsonFloat) return v.value;
        if (!isInteger(v)) wrong("number");
        return Number(v);
    }
  }
  if ("enum" in type && "values" in type) {
    if (typeof v !== "string") wrong("string");
    if (!type.values.includes(v as string)) {
      fail(`Parameter '${name}' does not accept value '${v}'`);
    }
    return v;
  }
  if ("list" in type) {
    if (!Array.isArray(v)) wrong("array");
    return (v as JsonValue[]).map((x, i) => checkValue(type.list, x, `${name}[${i}]`));
  }
  if ("struct" in type) {
    if (!isObject(v)) wrong("object");
    return checkFields(type.struct, v as { [key: string]: JsonValue }, `${name}.`);
  }
  // An alternate picks its branch by the JSON type, as QEMU's visitor does.
  if (type.int && isInteger(v)) return checkValue("int", v, name);
  if (type.bool && typeof v === "boolean") return v;
  if (type.enum && typeof v === "string") {
    return checkValue({ enum: type.alternate, values: type.enum.values }, v, name);
  }
  return wrong(type.alternate);
}

/** Checks an arguments object against the fields; returns the handler's argument record. */
export function checkFields(
  fields: Fields,
  args: { [key: string]: JsonValue },
  prefix = "",
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const known = new Set<string>();
  for (const [spec, type] of Object.entries(fields)) {
    const optional = spec.startsWith("*");
    const key = optional ? spec.slice(1) : spec;
    known.add(key);
    if (!Object.hasOwn(args, key)) {
      if (!optional) fail(`Parameter '${prefix}${key}' is missing`);
      continue;
    }
    out[key] = checkValue(type, args[key], `${prefix}${key}`);
  }
  for (const key of Object.keys(args)) {
    if (!known.has(key)) fail(`Parameter '${prefix}${key}' is unexpected`);
  }
  return out;
}
