/**
 * How the client reaches Redis: the URL forms of docs/PROTOCOL.md (one
 * server, a Cluster, Sentinels; `rediss` for TLS), TLS options, connection
 * names, and Redis errors turned into wasmq errors.
 */
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis } from 'ioredis';
import { WasmqError } from './errors.js';
export declare const DEFAULT_URL = "redis://127.0.0.1:6379";
/** How to connect, besides the URL. */
export interface ConnectOptions {
    /** The name connections carry in `CLIENT LIST` (default `wasmq:client:node:<host>:<pid>`). */
    name?: string;
    /** A PEM file of the CA certificate(s) that sign the server's certificate, instead of the system's roots. */
    tlsCa?: string;
    /** A PEM file of this client's certificate, for servers that require one (with `tlsKey`). */
    tlsCert?: string;
    /** The PEM file of the private key of `tlsCert`. */
    tlsKey?: string;
    /** Accept a certificate that does not name the host connected to (the rest is still checked). */
    tlsSkipHostnameCheck?: boolean;
}
/** `wasmq:client:node:<host>:<pid>`. */
export declare function defaultName(): string;
export type Mode = 'single' | 'cluster' | 'sentinel';
/** Where Redis is, parsed from a URL. */
export interface Target {
    mode: Mode;
    nodes: {
        host: string;
        port: number;
    }[];
    tls?: ConnectionOptions;
    username?: string;
    password?: string;
    db: number;
    master?: string;
    /** The URL with any password hidden, for messages. */
    shown: string;
}
export declare function redact(url: string): string;
/** Parses `redis[s]://`, `redis[s]+cluster://` and `redis[s]+sentinel://…/MASTER` URLs with their TLS options. */
export declare function parseUrl(url: string, options: ConnectOptions): Target;
/** A connection (ioredis Redis or Cluster) to the target, not yet connected. */
export declare function open(target: Target, name: string): Redis | Cluster;
/** What a TLS failure means, in words that say what to do. */
export declare function explainTls(text: string, code?: string): string | undefined;
/** An ioredis error as the wasmq error a caller branches on. */
export declare function translate(err: unknown, shown: string): WasmqError;
