// Package jobs runs self-healing build jobs ([selfheal.Spec]) for the
// controller: on the controller itself (where: controller), with bounded
// concurrency, cancellation and live progress, or on the rigs a selector
// picks (where: agent:<selector>), as RUN_JOB commands whose result is the
// rig's [selfheal.Result].
//
// Every job is indexed in the controller's database (bucket [IndexBucket]);
// each run's record and attempts go through [selfheal.BoltRecorder], so a
// job shows the same attempts, diagnostics and diffs wherever it ran.
// [Server] exposes the [Manager] as quarry.v1.JobService.
package jobs
