// Large reply bodies are written from memory the HTTP transport lends (req.replyBuffer) and takes
// back once uWS has every byte: whether the answer went at once, as the socket drained behind a
// slow reader, or not at all because the client left first. Every answer must still be exactly
// what the route wrote, however often the memory was reused.
import t from 'tap';
import { connect, type Socket } from 'node:net';
import * as uws from 'uWebSockets.js';
import { attachHttp, InFlight, OpenStreams, ReplyBuffers, type ApiHandler } from '../dist/server/http.js';
import type { ApiReply, ApiRequest } from '../dist/api/api.js';

/** `bytes` bytes that depend on `seed` at every offset, so a body left over from another answer shows. */
function fill(body: Uint8Array, seed: number): void {
  for (let i = 0; i < body.length; i++) body[i] = (i * 31 + seed * 7 + (i >>> 10)) & 0xff;
}

function expected(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes);
  fill(b, seed);
  return b;
}

interface Harness {
  port: number;
  replies: ReplyBuffers;
  /** Requests whose client has gone, as the route saw them (their signal aborted). */
  aborted: Map<number, Promise<void>>;
  /** Opens the gate of a request held by /held (its answer is written only then). */
  release: Map<number, () => void>;
  /** Resolves once the route has answered request `seed` (the answer is written on the next turn). */
  answered: Map<number, Promise<void>>;
  close(): void;
}

/** A uWS app on loopback whose routes answer from lent memory: /big?bytes=N&seed=S, and /held (the same, after a gate). */
async function harness(): Promise<Harness> {
  const app = uws.App();
  const replies = new ReplyBuffers();
  const aborted = new Map<number, Promise<void>>();
  const release = new Map<number, () => void>();
  const answered = new Map<number, Promise<void>>();
  const api: ApiHandler = {
    async handle(req: ApiRequest): Promise<ApiReply> {
      const q = new URLSearchParams(req.query);
      const bytes = Number(q.get('bytes'));
      const seed = Number(q.get('seed'));
      aborted.set(seed, new Promise((resolve) => req.signal?.addEventListener('abort', () => resolve())));
      let done!: () => void;
      answered.set(seed, new Promise((resolve) => { done = resolve; }));
      if (req.path === '/held') await new Promise<void>((resolve) => release.set(seed, resolve));
      const body = req.replyBuffer!(bytes);
      fill(body, seed);
      done();
      return { status: 200, headers: { 'content-type': 'application/octet-stream' }, body };
    },
  };
  attachHttp(app, api, { maxBodyBytes: 1 << 20 }, new InFlight(), () => false, new OpenStreams(), replies);
  const listen = await new Promise<uws.us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen failed')))));
  const port = uws.us_socket_local_port(listen as unknown as uws.us_socket);
  return { port, replies, aborted, release, answered, close: () => uws.us_listen_socket_close(listen) };
}

/** A raw keep-alive GET whose socket starts paused: nothing is read until the test says so. */
function pausedGet(port: number, path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.pause();
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Reads one answer from `socket` (resuming it) and returns its body. */
function readAnswer(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    let bodyStart = -1;
    let length = -1;
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      got += chunk.length;
      const all = Buffer.concat(chunks, got);
      if (bodyStart < 0) {
        const end = all.indexOf('\r\n\r\n');
        if (end < 0) return;
        bodyStart = end + 4;
        length = Number(/content-length: (\d+)/i.exec(all.subarray(0, end).toString('latin1'))?.[1]);
      }
      if (all.length >= bodyStart + length) {
        socket.removeAllListeners('data');
        resolve(all.subarray(bodyStart, bodyStart + length));
      }
    });
    socket.once('error', reject);
    socket.resume();
  });
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The value `map` gets for `key` once the route has put it there (the request reaches the route on a later turn). */
async function whenSet<V>(map: Map<number, V>, key: number): Promise<V> {
  while (!map.has(key)) await turn();
  return map.get(key)!;
}

t.test('answers written from lent memory are exact, and the memory is taken back and reused', async (t) => {
  const h = await harness();
  t.teardown(h.close);
  const MiB = 1 << 20;
  let seed = 0;
  let wrong = 0;
  for (let i = 0; i < 12; i++) {
    const s = ++seed;
    const res = await fetch(`http://127.0.0.1:${h.port}/big?bytes=${MiB + 17 * i}&seed=${s}`);
    if (!Buffer.from(await res.arrayBuffer()).equals(expected(MiB + 17 * i, s))) wrong += 1;
  }
  const concurrent = await Promise.all(Array.from({ length: 8 }, async () => {
    const s = ++seed;
    const res = await fetch(`http://127.0.0.1:${h.port}/big?bytes=${300_000}&seed=${s}`);
    return Buffer.from(await res.arrayBuffer()).equals(expected(300_000, s));
  }));
  wrong += concurrent.filter((ok) => !ok).length;
  const small = await fetch(`http://127.0.0.1:${h.port}/big?bytes=100&seed=99`);
  t.ok(Buffer.from(await small.arrayBuffer()).equals(expected(100, 99)), 'a small body (plain memory) is exact too');
  t.equal(wrong, 0, 'every one of 20 large answers byte for byte, sequential and concurrent');
  t.equal(h.replies.outstanding, 0, 'every lent buffer came back');
  t.ok(h.replies.kept >= 2 * MiB, 'and is kept for later answers');
});

t.test('an answer that goes out as a slow reader drains keeps its memory until the last byte is taken', async (t) => {
  const h = await harness();
  t.teardown(h.close);
  const bytes = 24 << 20; // more than loopback's socket buffers hold
  const socket = await pausedGet(h.port, `/big?bytes=${bytes}&seed=5`);
  t.teardown(() => socket.destroy());
  await whenSet(h.answered, 5);
  await turn();
  t.equal(h.replies.outstanding, 1, 'held while the socket is full');
  // Another answer meanwhile must not get the memory still being sent.
  const other = await fetch(`http://127.0.0.1:${h.port}/big?bytes=${bytes}&seed=6`);
  t.ok(Buffer.from(await other.arrayBuffer()).equals(expected(bytes, 6)), 'another answer meanwhile is exact');
  const body = await readAnswer(socket);
  t.ok(body.equals(expected(bytes, 5)), 'the slow answer is exact');
  t.equal(h.replies.outstanding, 0, 'given back once the last byte went');
});

t.test('a client that leaves mid-answer, or before its answer, gives the memory back', async (t) => {
  const h = await harness();
  t.teardown(h.close);
  const bytes = 24 << 20;
  const mid = await pausedGet(h.port, `/big?bytes=${bytes}&seed=7`);
  await whenSet(h.answered, 7);
  await turn();
  t.equal(h.replies.outstanding, 1, 'held while the socket is full');
  mid.destroy();
  await h.aborted.get(7);
  t.equal(h.replies.outstanding, 0, 'given back when the client left mid-answer');

  const early = await pausedGet(h.port, `/held?bytes=${bytes}&seed=8`);
  const open = await whenSet(h.release, 8);
  early.destroy();
  await h.aborted.get(8);
  open();
  await h.answered.get(8);
  await turn();
  t.equal(h.replies.outstanding, 0, 'an answer ready after its client left is given back unsent');
  const after = await fetch(`http://127.0.0.1:${h.port}/big?bytes=${bytes}&seed=9`);
  t.ok(Buffer.from(await after.arrayBuffer()).equals(expected(bytes, 9)), 'and the next answer from that memory is exact');
});
