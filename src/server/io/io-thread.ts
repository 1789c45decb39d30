// One I/O thread: a uWebSockets.js app listening on the server's port (the kernel spreads new
// connections over every thread's listener, SO_REUSEPORT), reading HTTP and WebSocket requests,
// parsing and validating them, and encoding and writing their answers. The core (routing,
// batching, models, monitoring) stays on the thread that started this one.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import * as uws from 'uWebSockets.js';
import { attachHttp, closeListener, InFlight, OpenStreams, settled, watchArrivals, type HttpOptions } from '../http.js';
import { attachWebSocket, type StreamOptions } from '../ws.js';
import { CatalogView, LocalReplicas } from './catalog.js';
import { Executor } from '../../execution/executor.js';
import { CoreLink, IoApi, RemoteFront } from './io-front.js';
import type { Control, ControlReply } from './wire.js';
import { drainDeadlineError } from '../drain-deadline.js';
import { errorReply } from '../../api/api.js';

export interface IoThreadData {
  host: string;
  port: number;
  http: HttpOptions;
  stream: StreamOptions;
  /** The data channel to the core's thread (envelopes of requests and answers). */
  data: MessagePort;
}

const control = parentPort!;
const options = workerData as IoThreadData;
const link = new CoreLink(options.data);
const catalog = new CatalogView();
const replicas = new LocalReplicas((plan) => Executor.replica(plan));
const front = new RemoteFront(link, catalog, replicas);
const api = new IoApi(front, link);
const app = uws.App();
const inFlight = new InFlight();
let closing = false;
let listenSocket: uws.us_listen_socket | false = false;

const reply = (msg: ControlReply) => control.postMessage(msg);

const streams = attachWebSocket(app, front, options.stream, () => !closing);
streams.on('pause', () => reply({ t: 'stream-event', event: 'pause' }));
streams.on('close', (e: { code: number; reason: string }) => reply({ t: 'stream-event', event: 'close', code: e.code, reason: e.reason }));
const openStreams = new OpenStreams();
attachHttp(app, api, options.http, inFlight, () => closing, openStreams);
watchArrivals(app, inFlight, streams);

/** The OS thread id, so a profiler can tell the I/O threads' CPU time apart. */
function threadId(): number {
  try {
    return Number(readFileSync('/proc/thread-self/stat', 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}

function stopListening(): void {
  if (listenSocket) {
    uws.us_listen_socket_close(listenSocket);
    listenSocket = false;
  }
}

/**
 * Ends the thread with every uWS socket closed: a worker whose event loop still holds uWS handles
 * when it ends takes the whole process down.
 */
function shutdown(code: number): void {
  stopListening();
  app.close();
  link.close();
  control.close();
  if (code !== 0) process.exit(code);
}

process.on('uncaughtException', (err) => {
  process.stderr.write(`umbra: an I/O thread failed and is replaced: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  shutdown(1);
});

control.on('message', (msg: Control) => {
  switch (msg.t) {
    case 'catalog':
      catalog.update(msg.catalog);
      replicas.update(msg.catalog.replicas);
      reply({ t: 'catalog-applied', generation: msg.generation });
      break;
    case 'drain':
      closing = true;
      void (async () => {
        const listener = listenSocket;
        listenSocket = false;
        if (listener) await closeListener(listener);
        openStreams.endAll();
        // Requests on open connections are still answered (with Connection: close); streams
        // answer what they run, refuse the rest and close with 1001.
        await settled(inFlight, streams);
        reply({ t: 'drained' });
      })();
      break;
    case 'deadline': {
      closing = true;
      const err = drainDeadlineError(msg.drainSeconds);
      inFlight.cutOff(errorReply(err));
      streams.cutOff(err);
      reply({ t: 'cut-off' });
      break;
    }
    case 'stop':
      closing = true;
      stopListening();
      void (async () => {
        await replicas.close();
        // Requests this thread handed to the core (all of an inline model's while its replica was
        // still opening) wait for answers that are still on their way, and requests read after
        // the drain are answered too: closing their sockets first would reset them unanswered.
        // The core waits for this no longer than its drain allows (IoHub.close).
        await settled(inFlight, streams);
      })().finally(() => shutdown(0));
      break;
    case 'exit':
      closing = true;
      stopListening();
      app.close();
      // Closed handles leave the event loop on its next turn: only then may the process go on exiting.
      setImmediate(() => {
        Atomics.store(msg.signal, msg.index, 1);
        Atomics.notify(msg.signal, msg.index);
      });
      break;
    case 'stats':
      reply({ t: 'stats', ...streams.stats(), queues: replicas.queues() });
      break;
    case 'flush':
      // On the data channel, behind every event this thread has produced so far.
      link.outbox.push({ t: 'flushed', seq: msg.seq });
      link.outbox.flush();
      break;
  }
});

app.listen(options.host, options.port, (socket) => {
  if (!socket) {
    reply({ t: 'listen-failed', message: `could not listen on ${options.host}:${options.port}: the port is in use or the address is not local (use --port to pick another)` });
    shutdown(0);
    return;
  }
  listenSocket = socket;
  reply({ t: 'listening', port: uws.us_socket_local_port(socket as unknown as uws.us_socket), tid: threadId() });
});
