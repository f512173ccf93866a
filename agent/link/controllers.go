package link

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/quarryfleet/quarry/pkg/pki"
)

// ControllersFile, in the agent's state dir, holds the controller addresses
// learned from the controller group, one per line, so a restarted agent
// can still find the leader when every configured address is a standby or
// gone.
const ControllersFile = "controllers"

// MaxControllers caps the known list. Learned entries come from the network;
// a group is a handful of controllers, so anything beyond this is noise or
// an attack on the rig's memory and reconnect time.
const MaxControllers = 16

// maxAddrLen bounds one address (a DNS name is at most 253 bytes, plus a
// port).
const maxAddrLen = 260

// Controllers is the list of controller addresses an agent knows and the one
// it currently uses. Configured addresses come first, in their order;
// addresses learned from the controllers follow. It is safe for concurrent
// use.
type Controllers struct {
	path string // "" keeps learned addresses in memory only

	mu   sync.Mutex
	list []string
	cur  int
}

// NewControllers starts from the configured addresses (at least one) and
// the learned ones persisted in stateDir ("" for none).
func NewControllers(configured []string, stateDir string) (*Controllers, error) {
	if len(configured) == 0 {
		return nil, errors.New("no controller address configured")
	}
	c := &Controllers{}
	for _, a := range configured {
		if err := CheckAddr(a); err != nil {
			return nil, fmt.Errorf("controller %q: %w", a, err)
		}
		if !slices.Contains(c.list, a) {
			c.list = append(c.list, a)
		}
	}
	if stateDir == "" {
		return c, nil
	}
	c.path = filepath.Join(stateDir, ControllersFile)
	b, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("learned controllers: %w", err)
	}
	// The file is ours, but it held network input: validate again rather
	// than trust it.
	c.merge(strings.Split(string(b), "\n"))
	return c, nil
}

// CheckAddr accepts host:port with a non-empty host and a numeric port.
func CheckAddr(a string) error {
	if len(a) > maxAddrLen {
		return fmt.Errorf("address longer than %d bytes", maxAddrLen)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n/") {
		return errors.New("bad host")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return errors.New("port must be a number between 1 and 65535")
	}
	return nil
}

// Current is the address in use.
func (c *Controllers) Current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.list[c.cur]
}

// List is every known address, configured first.
func (c *Controllers) List() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.list)
}

// Learn merges addresses the controller group announced: valid new ones
// are appended up to MaxControllers and persisted; invalid ones are
// skipped. It reports whether the list grew.
func (c *Controllers) Learn(addrs []string) (bool, error) {
	c.mu.Lock()
	grew := c.merge(addrs)
	list := slices.Clone(c.list)
	c.mu.Unlock()
	if !grew || c.path == "" {
		return grew, nil
	}
	if err := pki.WriteFileAtomic(c.path, []byte(strings.Join(list, "\n")+"\n"), 0o600); err != nil {
		return true, fmt.Errorf("persist learned controllers: %w", err)
	}
	return true, nil
}

// merge appends the valid, new addresses of in; c.mu is held.
func (c *Controllers) merge(in []string) bool {
	grew := false
	for _, a := range in {
		if len(c.list) >= MaxControllers {
			break
		}
		a = strings.TrimSpace(a)
		if a == "" || CheckAddr(a) != nil || slices.Contains(c.list, a) {
			continue
		}
		c.list = append(c.list, a)
		grew = true
	}
	return grew
}

// advance moves off addr after it failed: to hint when hint is a known
// address not yet tried this round, else to the next untried address in
// order. roundDone reports that every known address has been tried, and
// the caller should back off before using the returned one: then hint is
// still preferred if known, else the next address in order.
func (c *Controllers) advance(addr, hint string, tried map[string]bool) (next string, roundDone bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	known := func(a string) bool { return a != "" && slices.Contains(c.list, a) }
	i := slices.Index(c.list, addr)
	if i < 0 {
		i = c.cur
	}
	pick := ""
	if known(hint) && !tried[hint] {
		pick = hint
	} else {
		for k := 1; k <= len(c.list); k++ {
			if a := c.list[(i+k)%len(c.list)]; !tried[a] {
				pick = a
				break
			}
		}
	}
	if pick == "" {
		roundDone = true
		pick = c.list[(i+1)%len(c.list)]
		if known(hint) {
			pick = hint
		}
	}
	c.cur = slices.Index(c.list, pick)
	return pick, roundDone
}
