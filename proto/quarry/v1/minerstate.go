package quarryv1

// Miner states as agents report them in MinerStats.State. Only a running
// miner carries a hashrate reading; in every other state the hashrate is
// unknown, and consumers show it as such (never as zero).
const (
	MinerRunning        = "running"         // the stats API gave a reading
	MinerWarming        = "warming"         // the API answers but has no reading yet (DAG build, xmrig's first 10 s)
	MinerAPIUnreachable = "api-unreachable" // the process is up, its API does not answer
	MinerBadReply       = "bad-reply"       // the API answers with something that cannot be read
	MinerCrashed        = "crashed"         // exited; the supervisor restarts it after a backoff
	MinerStopped        = "stopped"         // stopped on purpose
	MinerFailed         = "failed"          // cannot start (binary refused, checksum)
)

// HashrateKnown reports whether m carries a hashrate reading. When false,
// Hashrate and the GPU hashrates mean nothing and must not be shown,
// exported or stored as zero.
func (m *MinerStats) HashrateKnown() bool { return m.GetState() == MinerRunning }
