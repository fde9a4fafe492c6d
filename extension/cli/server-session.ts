// What every `moe-lens` subcommand shares: reading the text file, the model path, starting
// the server for the duration of a command, and the policy flags.
import fs from "node:fs";
import path from "node:path";
import { flagInt, flagString, UsageError, type ParsedArgs } from "./args";
import { requireMoeModel } from "../core/gguf";
import { defaultServerBinary, demoModelPath, repoRootFromHere } from "../core/paths";
import type { Policy } from "../../shared/policy";
import { parseExpertList, parsePolicySpec, validatePolicy } from "../core/policy-parse";
import { packsForModel, routerPackDir } from "../core/router-pack";
import { ServerError } from "../core/server-client";
import { ServerProcess } from "../core/server-process";
import { NotTextError, readTextFile as readCheckedText } from "../core/text-input";

export const COMMON_FLAGS = ["model", "threads", "ngl", "server", "context", "json", "verbose", "predictor", "rpc", "router-pack"];
export const POLICY_FLAGS = ["amg", "min-k", "max-k", "beta", "pi", "ant", "disable", "boost", "policy", "no-skip"];

/** The text of FILE, refused (a usage error) when missing, empty, or not UTF-8 text (core/text-input.ts). */
export function readTextFile(file: string | undefined): string {
  if (!file) throw new UsageError("a text FILE is required");
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new UsageError(`no such file: ${file}`);
  let text: string;
  try {
    text = readCheckedText(file);
  } catch (err) {
    if (err instanceof NotTextError) throw new UsageError(err.message);
    throw err;
  }
  if (!text.trim()) throw new UsageError(`${file} is empty: there is nothing to trace`);
  return text;
}

export function modelPath(args: ParsedArgs): string {
  return path.resolve(flagString(args, "model") ?? demoModelPath(repoRootFromHere()));
}

/** `--rpc HOST:PORT,HOST:PORT` as a list; each entry must name a host and a port. */
export function rpcServerList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const list = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const e of list)
    if (!/^[^\s:]+:\d{1,5}$/.test(e) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(e)) throw new UsageError(`--rpc takes HOST:PORT[,HOST:PORT...], got "${e}"`);
  if (!list.length) throw new UsageError("--rpc needs at least one HOST:PORT");
  return list;
}

/** --router-pack: a pack file, or the name of one of the model's packs (core/router-pack.ts). */
export function routerPackFlag(args: ParsedArgs, model: string): string | undefined {
  const value = flagString(args, "router-pack");
  if (value === undefined || fs.existsSync(value)) return value;
  const packs = packsForModel(model);
  const byName = packs.find((p) => p.name === value);
  if (byName) return byName.path;
  throw new UsageError(
    `--router-pack ${value}: no such file, and no pack of that name in ${routerPackDir(model)}` +
      (packs.length ? ` (it has: ${packs.map((p) => p.name).join(", ")})` : ""),
  );
}

/** Transport failures that mean the server may have gone away (server-client.ts codes). */
const CONNECTION_FAILURES = new Set(["connection_lost", "unreachable", "stream_broken"]);

/**
 * Starts the server on `model` (default: --model, else the demo model), runs `body`, always stops it.
 * When a request fails because the server process ended (killed, crashed), the error says
 * so — "the server stopped (signal SIGKILL)" — instead of naming the lost connection.
 */
export async function withServer<T>(args: ParsedArgs, body: (server: ServerProcess) => Promise<T>, model = modelPath(args)): Promise<T> {
  await requireMoeModel(model);
  const verbose = args.flags.get("verbose") === true;
  const logTail: string[] = [];
  const server = await ServerProcess.start({
    binary: flagString(args, "server") ?? defaultServerBinary(repoRootFromHere()),
    model,
    ctx: flagInt(args, "context", 8, 1 << 22),
    threads: flagInt(args, "threads", 1, 1024),
    gpuLayers: flagInt(args, "ngl", 0, 100000),
    predictor: flagString(args, "predictor"),
    routerPack: routerPackFlag(args, model),
    rpcServers: rpcServerList(flagString(args, "rpc")),
    log: (line) => {
      if (line.trim() && logTail.push(line.trim()) > 10) logTail.shift();
      if (verbose)
        process.stderr.write(`[server] ${line}
`);
    },
  });
  const stop = () => void server.stop();
  process.once("SIGINT", stop);
  try {
    return await body(server);
  } catch (err) {
    if (err instanceof ServerError && CONNECTION_FAILURES.has(err.code)) {
      // The connection usually breaks a moment before the exit is reported.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const exit = await Promise.race([
        server.exited,
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), 2000);
        }),
      ]);
      clearTimeout(timer);
      if (exit) {
        const how = exit.signal ? `signal ${exit.signal}` : `status ${exit.code}`;
        const last = exit.signal ? "" : logTail.at(-1);
        throw new Error(
          `the server stopped (${how}) before it answered${last ? `; its last log line: ${last}` : ""}${verbose ? "" : " (--verbose shows its log)"}`,
        );
      }
    }
    throw err;
  } finally {
    process.removeListener("SIGINT", stop);
    await server.stop();
  }
}

export function policyFromFlags(args: ParsedArgs): Policy {
  const spec = flagString(args, "policy");
  const p: Policy = spec ? parsePolicySpec(spec) : {};
  const amg = flagString(args, "amg");
  if (amg !== undefined) p.amg = { threshold: Number(amg), ...(flagString(args, "min-k") ? { min_k: Number(flagString(args, "min-k")) } : {}) };
  else if (flagString(args, "min-k")) throw new UsageError("--min-k needs --amg");
  if (flagString(args, "max-k")) p.max_k = Number(flagString(args, "max-k"));
  if (flagString(args, "beta")) p.beta = { beta: Number(flagString(args, "beta")) };
  if (args.flags.get("pi")) p.pi = {};
  if (flagString(args, "ant")) p.ant = { gamma: Number(flagString(args, "ant")) };
  if (flagString(args, "disable")) p.disable = parseExpertList(flagString(args, "disable")!, false) as Array<[number, number]>;
  if (flagString(args, "boost")) p.boost = parseExpertList(flagString(args, "boost")!, true) as Array<[number, number, number]>;
  if (args.flags.get("no-skip")) p.skip = false;
  return validatePolicy(p);
}
