// The POP3 command table: { name, states, run }. The session checks the state once, centrally;
// a handler only does its command. States: "routed" (before login, the client names the server),
// "fixed" (before login on a fixed-upstream listener: login commands are relayed as they are),
// "transaction" (logged in: commands go upstream, replies come back through the relay in order).
import type { Pop3Session } from "./session.ts";
import { multiLine, proxyCapa } from "./capa.ts";
import { R, err, ok } from "./replies.ts";
import { parseAuthPlain } from "./login.ts";

export type State = "routed" | "fixed" | "transaction";

export interface Command {
  name: string;
  states: readonly State[];
  run(s: Pop3Session, args: string, line: Uint8Array): Promise<void> | void;
}

const PRE: readonly State[] = ["routed", "fixed"];
const TX: readonly State[] = ["transaction"];

/** Transaction commands with a reply of known shape; anything else is refused, never guessed. */
function tx(name: string, multi: (args: string) => boolean): Command {
  return {
    name,
    states: TX,
    run: (s, args, line) => s.forward(line, multi(args) ? { kind: "multi" } : { kind: "single" }),
  };
}

const noArg = (args: string) => args.trim() === "";

const TABLE: Command[] = [
  {
    name: "CAPA",
    states: ["routed", "fixed", "transaction"],
    run: (s, _args, line) => {
      if (s.state === "transaction") return s.forward(line, { kind: "capa" });
      if (s.state === "fixed") return s.relayCapaBeforeLogin(line);
      s.send(multiLine("+OK Capability list follows", proxyCapa({ stls: s.canStartTls })));
    },
  },
  {
    name: "STLS",
    states: PRE,
    run: (s) => s.startClientTls(),
  },
  {
    name: "QUIT",
    states: ["routed", "fixed", "transaction"],
    run: (s, _args, line) => s.quit(line),
  },
  {
    name: "USER",
    states: PRE,
    run: (s, args, line) => {
      if (s.state === "fixed") return s.relayLogin(line, "USER", args);
      const name = args.trim();
      if (!name) return s.reply(err("USER needs a name (name/server[:port])."));
      // Dovecot-style: accept now, judge at PASS, so a probe cannot tell good names from bad.
      s.pendingUser = name;
      s.reply(ok());
    },
  },
  {
    name: "PASS",
    states: PRE,
    run: async (s, args, line) => {
      s.log.addSecret(args); // whatever the server or a later line says, this never reaches the log
      if (s.state === "fixed") return s.relayLogin(line, "PASS", "");
      const name = s.pendingUser;
      if (name === null) return s.reply(err("USER first."));
      s.pendingUser = null;
      // RFC 1939 lets passwords hold spaces: everything after "PASS ".
      return s.loginRouted(name, args);
    },
  },
  {
    name: "APOP",
    states: PRE,
    run: (s, args, line) => {
      if (s.state === "fixed") return s.relayLogin(line, "APOP", args.split(" ")[0] ?? "");
      // The digest covers our greeting's timestamp, not the server's: it cannot be relayed.
      s.reply(err("APOP is not available through the proxy; use USER/PASS or AUTH PLAIN."));
    },
  },
  {
    name: "AUTH",
    states: PRE,
    run: async (s, args, line) => {
      if (s.state === "fixed") return s.relayLogin(line, "AUTH", "");
      const [mech = "", initial] = args.trim().split(/\s+/);
      if (!mech) return s.send("+OK\r\nPLAIN\r\n.\r\n");
      if (mech.toUpperCase() !== "PLAIN") return s.reply(err("[AUTH] Unsupported authentication mechanism."));
      const response = initial ?? (await s.saslContinue());
      if (response === null) return;
      if (response.trim() === "*") return s.reply(err("[AUTH] Authentication cancelled."));
      s.log.addSecret(response.trim());
      const parsed = parseAuthPlain(response);
      if (typeof parsed === "string") {
        s.log.info("login refused", { reason: parsed });
        return s.reply(R.authFailed());
      }
      s.log.addSecret(parsed.password);
      return s.loginRouted(parsed.authcid, parsed.password);
    },
  },
  {
    name: "RETR",
    states: TX,
    run: (s, args, line) => s.forward(line, { kind: "message", msg: args.trim(), partial: false }),
  },
  {
    name: "TOP",
    states: TX,
    run: (s, args, line) => s.forward(line, { kind: "message", msg: args.trim().split(/\s+/)[0] ?? "", partial: true }),
  },
  tx("LIST", noArg),
  tx("UIDL", noArg),
  tx("STAT", () => false),
  tx("DELE", () => false),
  tx("NOOP", () => false),
  tx("RSET", () => false),
  tx("LAST", () => false),
];

export const COMMANDS: ReadonlyMap<string, Command> = new Map(TABLE.map((c) => [c.name, c]));
