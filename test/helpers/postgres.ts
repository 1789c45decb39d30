// A fresh PostgreSQL database per test file on the real server that scripts/test-services.sh
// starts (CI runs it before the tests). Without one the caller skips with this reason.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_SKIP_REASON = 'no PostgreSQL server: run `eval "$(scripts/test-services.sh)"` first (sets UMBRA_TEST_PG_URL)';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/** Creates an empty database and returns its URL, or undefined when no server is configured. */
export async function createTestDatabase(): Promise<TestDatabase | undefined> {
  const admin = process.env.UMBRA_TEST_PG_URL;
  if (!admin) return undefined;
  const name = `umbra_test_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
