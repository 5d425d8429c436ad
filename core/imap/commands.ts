// The not-authenticated command table: { name, run }. The session looks a command up once; anything
// not here is refused there. After login the relay carries every command, so this table stays small.
import type { ImapSession } from "./session.ts";
import { REFUSE } from "./login.ts";
import { proxyCapabilities } from "./capability.ts";
import { parseAuthPlain } from "../net/routing.ts";
import { astringText, type Token } from "./wire.ts";

export interface Command {
  name: string;
  run(s: ImapSession, tag: string, args: Token[]): Promise<void> | void;
}

const TABLE: Command[] = [
  {
    name: "CAPABILITY",
    run: (s, tag) => {
      s.send(`* CAPABILITY ${proxyCapabilities({ starttls: s.canStartTls }).join(" ")}`);
      s.send(`${tag} OK Capability completed.`);
    },
  },
  { name: "NOOP", run: (s, tag) => s.send(`${tag} OK NOOP completed.`) },
  { name: "LOGOUT", run: (s, tag) => s.logout(tag) },
  { name: "STARTTLS", run: (s, tag) => s.startClientTls(tag) },
  {
    // Answered here: the server has not been chosen yet (it is named by the login). After login the
    // client's ID goes to the server.
    name: "ID",
    run: (s, tag) => {
      s.send('* ID ("name" "mailsentry")');
      s.send(`${tag} OK ID completed.`);
    },
  },
  {
    name: "LOGIN",
    run: async (s, tag, args) => {
      const name = astringText(args[0]);
      const password = astringText(args[1]);
      if (name === null || password === null || args.length !== 2) return s.send(`${tag} BAD LOGIN needs a user name and a password.`);
      await s.login(tag, name, password);
    },
  },
  {
    name: "AUTHENTICATE",
    run: async (s, tag, args) => {
      const mech = args[0]?.kind === "atom" ? args[0].value.toUpperCase() : "";
      if (mech !== "PLAIN") return s.send(`${tag} NO [CANNOT] Only AUTHENTICATE PLAIN is supported.`);
      let response = args[1]?.kind === "atom" ? args[1].value : null;
      if (response === null) {
        response = await s.saslContinue();
        if (response === null) return;
      }
      if (response.trim() === "*") return s.send(`${tag} BAD Authentication cancelled.`);
      const plain = parseAuthPlain(response);
      if (typeof plain === "string") {
        s.log.info("login refused", { reason: plain });
        return s.send(`${tag} NO ${REFUSE.authFailed().response}`);
      }
      // SASL PLAIN carries UTF-8 (RFC 4616); parseAuthPlain keeps bytes as latin1.
      const utf8 = (t: string) => Buffer.from(t, "latin1").toString("utf8");
      await s.login(tag, utf8(plain.authcid), utf8(plain.password));
    },
  },
];

export const COMMANDS: ReadonlyMap<string, Command> = new Map(TABLE.map((c) => [c.name, c]));
