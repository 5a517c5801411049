/**
 * How the client reaches Redis: the URL forms of docs/PROTOCOL.md (one
 * server, a Cluster, Sentinels; `rediss` for TLS), TLS options, connection
 * names, and Redis errors turned into wasmq errors.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Cluster, Redis } from 'ioredis';
import { InvalidTaskError, RedisUnreachableError, TlsError, WasmqError } from './errors.js';
export const DEFAULT_URL = 'redis://127.0.0.1:6379';
/** `wasmq:client:node:<host>:<pid>`. */
export function defaultName() {
    return `wasmq:client:node:${hostname()}:${process.pid}`;
}
export function redact(url) {
    const at = url.lastIndexOf('@');
    const sep = url.indexOf('://');
    if (sep < 0 || at < 0)
        return url;
    const userinfo = url.slice(sep + 3, at);
    const user = userinfo.includes(':') ? userinfo.split(':')[0] : '';
    return `${url.slice(0, sep)}://${user}:***@${url.slice(at + 1)}`;
}
function hostPort(text, shown) {
    const trimmed = text.trim();
    let host = trimmed;
    let port = '6379';
    if (trimmed.startsWith('[')) {
        const end = trimmed.indexOf(']');
        host = trimmed.slice(1, end);
        port = trimmed.slice(end + 2) || '6379';
    }
    else if (trimmed.includes(':')) {
        host = trimmed.slice(0, trimmed.lastIndexOf(':'));
        port = trimmed.slice(trimmed.lastIndexOf(':') + 1);
    }
    const number = Number(port);
    if (!host || !Number.isInteger(number))
        throw new InvalidTaskError(`invalid Redis URL ${shown}: bad node ${JSON.stringify(text)}`);
    return { host, port: number };
}
/** Parses `redis[s]://`, `redis[s]+cluster://` and `redis[s]+sentinel://…/MASTER` URLs with their TLS options. */
export function parseUrl(url, options) {
    const shown = redact(url);
    const sep = url.indexOf('://');
    if (sep < 0)
        throw new InvalidTaskError(`invalid Redis URL ${shown}: no scheme`);
    const scheme = url.slice(0, sep);
    const modes = {
        redis: ['single', false],
        rediss: ['single', true],
        'redis+cluster': ['cluster', false],
        'rediss+cluster': ['cluster', true],
        'redis+sentinel': ['sentinel', false],
        'rediss+sentinel': ['sentinel', true],
    };
    const found = modes[scheme];
    if (!found) {
        throw new InvalidTaskError(`invalid Redis URL ${shown}: unknown scheme ${scheme}://; expected redis://, rediss://, redis+cluster://, redis+sentinel:// (or their rediss+ forms)`);
    }
    const [mode, secure] = found;
    const wantsTls = Boolean(options.tlsCa || options.tlsCert || options.tlsKey || options.tlsSkipHostnameCheck);
    if (wantsTls && !secure) {
        throw new InvalidTaskError(`invalid Redis URL ${shown}: TLS options were given but the URL's scheme is ${scheme}://; use ${scheme.replace('redis', 'rediss')}:// for TLS`);
    }
    if (Boolean(options.tlsCert) !== Boolean(options.tlsKey))
        throw new TlsError('a client certificate needs both tlsCert and tlsKey');
    let rest = url.slice(sep + 3);
    let username;
    let password;
    const at = rest.lastIndexOf('@');
    if (at >= 0) {
        const userinfo = rest.slice(0, at);
        rest = rest.slice(at + 1);
        const colon = userinfo.indexOf(':');
        username = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(0, colon)) || undefined;
        password = colon < 0 ? undefined : decodeURIComponent(userinfo.slice(colon + 1));
    }
    let db = 0;
    let master;
    let hosts = rest;
    if (mode === 'single') {
        const slash = rest.indexOf('/');
        if (slash >= 0) {
            hosts = rest.slice(0, slash);
            const path = rest.slice(slash + 1).replace(/\/+$/, '');
            if (path) {
                db = Number(path);
                if (!Number.isInteger(db))
                    throw new InvalidTaskError(`invalid Redis URL ${shown}: bad database ${JSON.stringify(path)}`);
            }
        }
    }
    else if (mode === 'sentinel') {
        const slash = rest.indexOf('/');
        master = slash < 0 ? '' : rest.slice(slash + 1);
        if (!master)
            throw new InvalidTaskError(`invalid Redis URL ${shown}: no master name: write ${scheme}://HOST:PORT,HOST:PORT,…/MASTER`);
        hosts = rest.slice(0, slash);
    }
    const nodes = hosts
        .replace(/\/+$/, '')
        .split(',')
        .filter((node) => node.trim() !== '')
        .map((node) => hostPort(node, shown));
    if (nodes.length === 0)
        throw new InvalidTaskError(`invalid Redis URL ${shown}: no nodes listed`);
    let tls;
    if (secure) {
        const read = (what, path) => {
            if (!path)
                return undefined;
            try {
                return readFileSync(path);
            }
            catch (err) {
                throw new TlsError(`cannot read the ${what} ${path}: ${err.message}`);
            }
        };
        tls = {
            ca: read('CA file (tlsCa)', options.tlsCa),
            cert: read('client certificate (tlsCert)', options.tlsCert),
            key: read('client key (tlsKey)', options.tlsKey),
            rejectUnauthorized: true,
        };
        if (options.tlsSkipHostnameCheck)
            tls.checkServerIdentity = () => undefined;
    }
    return { mode, nodes, tls, username, password, db, master, shown };
}
/** A connection (ioredis Redis or Cluster) to the target, not yet connected. */
export function open(target, name) {
    const common = {
        connectionName: name,
        username: target.username,
        password: target.password,
        tls: target.tls,
        lazyConnect: true,
        connectTimeout: 3000,
        commandTimeout: 15000,
        maxRetriesPerRequest: 2,
        enableOfflineQueue: true,
        retryStrategy: (times) => Math.min(100 * 2 ** times, 2000),
    };
    if (target.mode === 'cluster') {
        const options = {
            redisOptions: common,
            lazyConnect: true,
            slotsRefreshTimeout: 3000,
            clusterRetryStrategy: (times) => (times > 5 ? null : Math.min(100 * 2 ** times, 2000)),
        };
        return new Cluster(target.nodes, options);
    }
    if (target.mode === 'sentinel') {
        return new Redis({
            ...common,
            db: target.db,
            sentinels: target.nodes,
            name: target.master,
            enableTLSForSentinelMode: target.tls !== undefined,
            sentinelTLS: target.tls,
            sentinelRetryStrategy: (times) => (times > 5 ? null : Math.min(100 * 2 ** times, 2000)),
        });
    }
    return new Redis({ ...common, host: target.nodes[0].host, port: target.nodes[0].port, db: target.db });
}
/** What a TLS failure means, in words that say what to do. */
export function explainTls(text, code) {
    const lowered = text.toLowerCase();
    if (code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
        code === 'SELF_SIGNED_CERT_IN_CHAIN' ||
        code === 'DEPTH_ZERO_SELF_SIGNED_CERT' ||
        code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' ||
        lowered.includes('unable to verify') ||
        lowered.includes('self-signed certificate') ||
        lowered.includes('unknown ca')) {
        return "the server's certificate is not signed by a CA this client trusts (unknown issuer): pass the CA certificate that signed it as tlsCa";
    }
    if (code === 'CERT_HAS_EXPIRED' || lowered.includes('certificate has expired')) {
        return "the server's certificate has expired: renew it on the server";
    }
    if (code === 'CERT_NOT_YET_VALID' || lowered.includes('not yet valid')) {
        return "the server's certificate is not valid yet: check the clocks of the server and this host";
    }
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || lowered.includes("does not match certificate's altnames")) {
        return "the server's certificate does not name the host connected to: connect by a name it lists, or pass tlsSkipHostnameCheck: true to accept it anyway";
    }
    if (lowered.includes('certificate required'))
        return 'the server requires a client certificate: pass tlsCert and tlsKey';
    if (lowered.includes('wrong version number') || lowered.includes('packet length too long')) {
        return "the server did not answer in TLS: it may serve plain text on this port (use redis:// or the server's tls-port)";
    }
    return undefined;
}
/** An ioredis error as the wasmq error a caller branches on. */
export function translate(err, shown) {
    if (err instanceof WasmqError)
        return err;
    const error = err;
    const text = String(error?.message ?? err);
    const cause = error?.cause;
    const problem = explainTls(text, error?.code) ?? (cause ? explainTls(String(cause.message), cause.code) : undefined);
    if (problem)
        return new TlsError(`TLS connection to Redis at ${shown} failed: ${problem} (${text})`);
    if (text.includes('NOAUTH') || text.includes('WRONGPASS')) {
        return new WasmqError(`Redis at ${shown} refused the password (or needs one): ${text}`);
    }
    if (text.includes('OOM command not allowed')) {
        return new WasmqError(`Redis at ${shown} is out of memory: it is at its maxmemory and refuses writes; nothing was written`);
    }
    const unreachable = ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE'].includes(error?.code ?? '') ||
        /connection|connect|closed|timed? ?out|max retries|READONLY|LOADING|CLUSTERDOWN|None of the|ready check|All sentinels|failed to refresh slots/i.test(text);
    if (unreachable)
        return new RedisUnreachableError(`Redis at ${shown} is unreachable: ${text}`);
    return new WasmqError(`Redis at ${shown} refused a command: ${text}`);
}
