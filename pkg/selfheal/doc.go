// Package selfheal runs build jobs and repairs the common, mechanical causes
// of build failure without a person in the loop.
//
// A job ([Spec]) names build and test steps. [Run] executes them as child
// processes, parses a failed build's output into [Diagnostic] values, matches
// them against data-driven rule packs ([PackSet]) and applies one remediation
// from a closed set implemented in this package (editing a .csproj, deleting
// build output, rerunning with less parallelism, running a whitelisted tool).
// It then rebuilds, and stops when the build and tests pass, when a
// remediation leaves the failure unchanged, or when the attempt limit is hit;
// in the last two cases [Result.Diagnosis] tells a person what to do.
//
// Nothing outside the closed set is ever executed: a rule that asks for an
// unknown action or a command off the whitelist is reported, not run. Every
// file edit is backed up and can be undone with [Revert].
package selfheal
