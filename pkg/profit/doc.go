// Package profit is the pure arithmetic of mining profitability: coins per day
// from network figures, revenue after fees, power cost under time-of-use
// tariffs, ranking every option for every rig across all cores, and the
// switching policy that decides when a rig should change what it mines.
//
// Nothing here performs I/O or keeps global state; callers feed market
// figures, rig measurements and the clock, and get numbers and decisions back.
package profit
