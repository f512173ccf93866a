// Package market gathers coin market data (chain statistics and prices) from
// pluggable sources, validates it, and serves the last good snapshot from a
// cache that refreshes in the background and survives restarts and outages.
//
// Sources: WhatToMine (chain facts and a BTC price), minerstat (chain facts
// and a USD price; -1 means unknown), CoinGecko (USD prices only) and File
// (Quarry's own JSON format, see File). All configured sources are fetched
// in parallel, each under its own timeout.
//
// Merge precedence, with sources in the order given in Config.Sources:
//
//   - Chain facts (algorithm, block time, block reward, difficulty, nethash,
//     difficulty kind) come as one group from the first chain source that
//     reports the coin, so difficulty and nethash never come from two
//     different sites. A block time, reward, algorithm or name that source
//     lacks is filled from later chain sources; a missing nethash is derived
//     from difficulty and block time using the coin's DifficultyKind.
//   - The USD price is the first usable one from: price-only sources
//     (CoinGecko) in order, then combined sources' USD price (minerstat,
//     File) in order, then a BTC price (WhatToMine) times bitcoin's USD
//     price from any price source ("btc" tag).
//
// Validation drops coins whose difficulty, nethash, block reward, block
// time or price is missing, zero, negative, NaN or infinite, and records
// why in Snapshot.Dropped. A price or difficulty that moves by more than
// Config.JumpFactor (default 3×) against the last accepted value is held
// (Snapshot.Held, old value kept) until Config.ConfirmFetches (default 2)
// consecutive fetches show it. Coins missing from a fetch or dropped by it
// keep their last accepted values while those are younger than
// MaxStaleness.
//
// Cache.Get never blocks on the network: the cache starts from the
// snapshot persisted in bbolt or, failing that, the snapshot embedded in
// the binary, and Cache.Run refreshes in the background. Cache.Health says
// when the data is too old (default 2h) for profit switching.
package market
