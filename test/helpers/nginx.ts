// A real nginx for tests: Debian's nginx-light (with its http2 and grpc modules), run in the
// foreground as this user from a generated config in a temporary folder, on loopback ports only.
// Tests that need it skip with NGINX_MISSING where it is not installed.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary } from './prometheus.js';

export const NGINX = findBinary('nginx');
export const NGINX_MISSING = 'nginx is not installed (apt-get install -y nginx-light; .ci/run installs it)';

export interface Nginx {
  /** The folder nginx runs in (its logs and temporary files). */
  dir: string;
  /** Its error log so far. */
  log(): string;
  stop(): Promise<void>;
}

/** Whether something accepts connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * nginx with `httpBlock` (directives for its `http {}` context: upstreams, servers) once every port
 * of `ports` accepts connections. Every path nginx writes is under its own folder: it needs no root
 * and touches nothing of the system's.
 */
export async function startNginx(httpBlock: string, ports: number[]): Promise<Nginx> {
  if (!NGINX) throw new Error(NGINX_MISSING);
  const dir = mkdtempSync(join(tmpdir(), 'umbra-nginx-'));
  writeFileSync(join(dir, 'nginx.conf'), [
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} info;`,
    'events { worker_connections 256; }',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${join(dir, 'body')};`,
    `  proxy_temp_path ${join(dir, 'proxy')};`,
    `  fastcgi_temp_path ${join(dir, 'fastcgi')};`,
    `  uwsgi_temp_path ${join(dir, 'uwsgi')};`,
    `  scgi_temp_path ${join(dir, 'scgi')};`,
    httpBlock,
    '}',
    '',
  ].join('\n'));
  const child = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, 'exit');
  const log = () => `${stderr}${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''}`;
  // Ready once it accepts connections: polled, bounded, failing with nginx's own words.
  const deadline = Date.now() + 10_000;
  for (const port of ports) {
    while (!(await listening(port))) {
      if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${log()}`);
      if (Date.now() > deadline) throw new Error(`nginx did not listen on 127.0.0.1:${port} within 10 s: ${log()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return {
    dir,
    log,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
