// `moe-lens rpc-server`: runs llama.cpp's ggml-rpc-server (built with the server) on a worker
// machine, so that `moe-lens … --rpc HOST:PORT,… --ngl N` spreads a model's layers over several
// machines while MoE Lens traces and applies policies on the host. rpc-server has no
// authentication or encryption: bind it to a private network only.
import { spawn } from "node:child_process";
import fs from "node:fs";
import { checkKnownFlags, flagInt, flagString, UsageError, type ParsedArgs } from "./args";
import { llamaToolBinary, repoRootFromHere } from "../core/paths";

export const RPC_HELP = `  moe-lens rpc-server [--host ADDR] [--port N] [--threads N]
                                                     serve this machine's CPU (or GPU build) to a MoE Lens host over
                                                     llama.cpp RPC (no authentication: private networks only)`;

async function cmdRpcServer(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, ["host", "port", "threads", "server"]);
  const bin = flagString(args, "server") ?? llamaToolBinary(repoRootFromHere(), "ggml-rpc-server");
  if (!fs.existsSync(bin)) throw new UsageError(`${bin} is missing: run \`npm run build:native\``);
  const host = flagString(args, "host") ?? "127.0.0.1";
  const port = flagInt(args, "port", 1, 65535) ?? 50052;
  const threads = flagInt(args, "threads", 1, 1024);
  if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1") {
    process.stderr.write(
      `moe-lens: warning: rpc-server on ${host}:${port} has no authentication: anyone who can reach it can run ` +
        "computations and read what is sent to it. Use a private network only.\n",
    );
  }
  const child = spawn(bin, ["-H", host, "-p", String(port), ...(threads ? ["-t", String(threads)] : [])], { stdio: "inherit" });
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  process.on("SIGINT", forward("SIGINT"));
  process.on("SIGTERM", forward("SIGTERM"));
  const code = await new Promise<number>((resolve) => child.on("exit", (c, s) => resolve(c ?? (s ? 1 : 0))));
  if (code !== 0) throw new Error(`ggml-rpc-server exited with status ${code}`);
}

export const rpcCommands: Record<string, (a: ParsedArgs) => Promise<void>> = { "rpc-server": cmdRpcServer };
