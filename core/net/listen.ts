// Listening sockets: one per configured address, plain or implicit TLS, each accepted connection
// handed over as a bound Channel. Addresses are "host:port" or "[v6]:port"; port 0 picks a free one.
import type { TCPSocketListener, TLSOptions } from "bun";
import { Channel, HANDLERS } from "./queue.ts";
import { parseHostPort } from "./security.ts";

export interface Listener {
  readonly hostname: string;
  readonly port: number;
  /** Stops accepting; connections in flight are left alone. */
  stop(): void;
}

export interface ListenOptions {
  address: string;
  /** Implicit TLS (POP3S/IMAPS) with this certificate. */
  tls?: TLSOptions;
  queueHighWater?: number;
  onChannel(ch: Channel): void;
}

export function listen(o: ListenOptions): Listener {
  const hp = parseHostPort(o.address, true);
  if (!hp) throw new Error(`cannot listen on "${o.address}": expected host:port`);
  const server: TCPSocketListener<Channel> = Bun.listen<Channel>({
    hostname: hp.host,
    port: hp.port,
    tls: o.tls,
    socket: {
      ...HANDLERS,
      open(socket) {
        const ch = new Channel({ tls: !!o.tls, queueHighWater: o.queueHighWater });
        ch.bind(socket);
        try {
          o.onChannel(ch);
        } catch {
          ch.destroy();
        }
      },
    },
  });
  return {
    hostname: server.hostname,
    port: server.port,
    stop: () => server.stop(false),
  };
}
