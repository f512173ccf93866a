package minerapi

import (
	"errors"
	"fmt"
)

// Error classes. Every error this package returns wraps exactly one of the
// roots (ErrUnreachable, ErrBadReply, ErrAuth, ErrNoHashrate, ErrConfig), so
// a watchdog can decide with errors.Is whether to restart the miner, alert
// about a wrong token, report a reply it cannot read, or just wait for the
// miner to warm up.
var (
	// ErrUnreachable means the miner did not answer: connection refused,
	// timeout, reset, or a connection closed without a byte.
	ErrUnreachable = errors.New("miner API unreachable")
	// ErrBadReply is a reply that arrived but cannot be understood even
	// after the known firmware defects are repaired (garbage, truncated, an
	// error status, an HTTP error). The miner is alive, so it is not
	// ErrUnreachable: restarting a miner that answers would not fix a
	// reply this package cannot read.
	ErrBadReply = errors.New("miner API reply not understood")
	// ErrTooLarge is a reply longer than the client's limit. It is a kind
	// of ErrBadReply.
	ErrTooLarge = fmt.Errorf("%w: reply too large", ErrBadReply)
	// ErrNotFound is HTTP 404: the miner answers but not at this path
	// (an older API version). It is a kind of ErrBadReply.
	ErrNotFound = fmt.Errorf("%w: 404 not found", ErrBadReply)
	// ErrNotHTTP is an answer that is not HTTP at all, as from the raw TCP
	// APIs of older miners (lolMiner 0.x). It is a kind of ErrBadReply.
	ErrNotHTTP = fmt.Errorf("%w: answer is not HTTP", ErrBadReply)

	// ErrAuth means the miner refused our credentials; restarting the miner
	// will not help.
	ErrAuth = errors.New("miner API refused access")
	// ErrUnauthorized is HTTP 401: no token sent but one is required.
	ErrUnauthorized = fmt.Errorf("%w: 401 unauthorized (access token missing)", ErrAuth)
	// ErrForbidden is HTTP 403: the token is wrong or the API is restricted.
	ErrForbidden = fmt.Errorf("%w: 403 forbidden (access token wrong or API restricted)", ErrAuth)

	// ErrNoHashrate means the reply parsed but carried no hashrate reading
	// (xmrig reports null for its first seconds). The Stats returned with
	// it hold everything else that was read; TotalHashrate is not a real
	// zero and must not be treated as one.
	ErrNoHashrate = errors.New("miner reported no hashrate")

	// ErrConfig is a flight sheet, mapping or adapter name we cannot use.
	ErrConfig = errors.New("invalid miner configuration")
)

// badReply wraps a parse failure so it matches ErrBadReply and keeps its cause.
func badReply(miner string, err error) error {
	return fmt.Errorf("%s: %w: %w", miner, ErrBadReply, err)
}

func badReplyf(miner, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", miner, ErrBadReply, fmt.Sprintf(format, args...))
}

func noHashrate(miner string) error {
	return fmt.Errorf("%s: %w", miner, ErrNoHashrate)
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}
