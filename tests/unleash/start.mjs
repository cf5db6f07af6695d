// Starts a real Unleash server (unleash-server 7.5.1, Apache-2.0) for rollguard's integration tests.
// Configured by environment variables; every default listens on 127.0.0.1 only. Started and stopped
// by .ci/unleash.sh (see there for the database and the tokens). No outbound calls: version check
// and telemetry are off.
import { start } from 'unleash-server';

const e = process.env;
const unleash = await start({
  db: {
    host: e.UNLEASH_DB_HOST ?? '127.0.0.1',
    port: Number(e.UNLEASH_DB_PORT ?? 5432),
    user: e.UNLEASH_DB_USER ?? 'postgres',
    password: e.UNLEASH_DB_PASSWORD ?? '',
    database: e.UNLEASH_DB_NAME ?? 'rollguard_unleash_test',
    ssl: false,
  },
  server: { host: '127.0.0.1', port: Number(e.UNLEASH_PORT ?? 4242) },
  authentication: {
    initApiTokens: [
      {
        type: 'admin', projects: ['*'], environment: '*',
        secret: e.UNLEASH_ADMIN_TOKEN ?? '*:*.test-admin-token', tokenName: 'rollguard-tests-admin',
      },
      {
        type: 'backend', projects: ['*'], environment: 'development',
        secret: e.UNLEASH_CLIENT_TOKEN ?? '*:development.test-client-token', tokenName: 'rollguard-tests-client',
      },
    ],
  },
  versionCheck: { enable: false },
  telemetry: false,
  logLevel: e.UNLEASH_LOG_LEVEL ?? 'warn',
});
console.log(`unleash ready on 127.0.0.1:${unleash.config.server.port}`);
