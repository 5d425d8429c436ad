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
      if (mech !== "PLAIN" && mech !== "LOGIN") return s.send(`${tag} NO [CANNOT] Only AUTHENTICATE PLAIN and LOGIN are supported.`);
      const initial = args[1]?.kind === "atom" ? args[1].value : null;
      const credentials = mech === "PLAIN" ? await plainCredentials(s, initial) : await loginCredentials(s, initial);
      if (credentials === null) return; // the connection went away mid-exchange
      if (credentials === "cancelled") return s.send(`${tag} BAD Authentication cancelled.`);
      if (typeof credentials === "string") {
        s.log.info("login refused", { reason: credentials });
        return s.send(`${tag} NO ${REFUSE.authFailed().response}`);
      }
      await s.login(tag, credentials.user, credentials.password);
    },
  },
];

type Credentials = { user: string; password: string } | "cancelled" | string | null;

// SASL carries UTF-8 (RFC 4616 for PLAIN; LOGIN clients send what they were typed, UTF-8 today);
// the base64 decoders keep bytes as latin1 so that nothing is lost before this point.
const utf8 = (t: string) => Buffer.from(t, "latin1").toString("utf8");
const isCancel = (response: string) => response.trim() === "*";

/** PLAIN (RFC 4616): one response, with SASL-IR or after an empty challenge. */
async function plainCredentials(s: ImapSession, initial: string | null): Promise<Credentials> {
  const response = initial ?? (await s.saslContinue(""));
  if (response === null) return null;
  if (isCancel(response)) return "cancelled";
  s.log.addSecret(response.trim());
  const plain = parseAuthPlain(response);
  if (typeof plain !== "string") s.log.addSecret(utf8(plain.password));
  return typeof plain === "string" ? plain : { user: utf8(plain.authcid), password: utf8(plain.password) };
}

/**
 * LOGIN (draft-murchison-sasl-login): the user name and then the password, each base64 after its
 * own challenge ("Username:", "Password:"); with SASL-IR the user name may come with the command.
 * Outlook and older clients pick it when it is offered, and curl can be told to.
 */
async function loginCredentials(s: ImapSession, initial: string | null): Promise<Credentials> {
  const user = initial ?? (await s.saslContinue(Buffer.from("Username:").toString("base64")));
  if (user === null) return null;
  if (isCancel(user)) return "cancelled";
  const password = await s.saslContinue(Buffer.from("Password:").toString("base64"));
  if (password === null) return null;
  if (isCancel(password)) return "cancelled";
  s.log.addSecret(password.trim());
  const name = decodeBase64(user);
  const secret = decodeBase64(password);
  if (name === null || secret === null) return "AUTHENTICATE LOGIN response is not base64";
  if (!name) return "AUTHENTICATE LOGIN gave no user name";
  return { user: utf8(name), password: utf8(secret) };
}

/** Strict base64 to latin1 text ("=" alone is the empty string, as SASL-IR spells it). */
function decodeBase64(text: string): string | null {
  const t = text.trim();
  if (t === "=") return "";
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4 !== 0) return null;
  return Buffer.from(t, "base64").toString("latin1");
}

export const COMMANDS: ReadonlyMap<string, Command> = new Map(TABLE.map((c) => [c.name, c]));
