package minerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults for a Client built with NewClient.
const (
	DefaultTimeout  = 3 * time.Second
	DefaultMaxBytes = 1 << 20 // real replies are a few KiB; 1 MiB is generous
)

// Client fetches raw replies from miners' stats APIs with a per-request
// timeout and a cap on reply size. It is safe for concurrent use.
type Client struct {
	timeout  time.Duration
	maxBytes int64
	http     *http.Client
	dialer   net.Dialer
}

// ClientOption changes a Client built by NewClient.
type ClientOption func(*Client)

// WithTimeout sets the limit for one request, connect to last byte.
func WithTimeout(d time.Duration) ClientOption { return func(c *Client) { c.timeout = d } }

// WithMaxBytes sets the largest reply accepted; longer replies are ErrTooLarge.
func WithMaxBytes(n int64) ClientOption { return func(c *Client) { c.maxBytes = n } }

// NewClient returns a Client with DefaultTimeout and DefaultMaxBytes unless
// options say otherwise.
func NewClient(opts ...ClientOption) *Client {
	c := &Client{timeout: DefaultTimeout, maxBytes: DefaultMaxBytes}
	for _, o := range opts {
		o(c)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxBytes
	}
	c.http = &http.Client{
		Transport: &http.Transport{
			// Miners listen on loopback or the rig's LAN; a proxy from the
			// environment would only get in the way.
			Proxy:       nil,
			DialContext: c.dialer.DialContext,
			// One short request every few seconds: a fresh connection
			// costs nothing on loopback and never lands on a stale socket
			// left by a miner that restarted.
			DisableKeepAlives:     true,
			ResponseHeaderTimeout: c.timeout,
		},
		// A miner API never redirects; following one would be a surprise.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c
}

// GetHTTP fetches url and returns the body. token, when set, is sent as
// "Authorization: Bearer" (xmrig's scheme).
func (c *Client) GetHTTP(ctx context.Context, url, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, configErr("stats URL %q: %v", url, err)
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if strings.Contains(err.Error(), "malformed HTTP") {
			// Something answered, in another protocol.
			return nil, fmt.Errorf("GET %s: %w: %w", url, ErrNotHTTP, err)
		}
		return nil, fmt.Errorf("GET %s: %w: %w", url, ErrUnreachable, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("GET %s: %w", url, ErrUnauthorized)
	case resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("GET %s: %w", url, ErrForbidden)
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %w", url, ErrNotFound)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, fmt.Errorf("GET %s: %w: HTTP status %d", url, ErrBadReply, resp.StatusCode)
	}
	body, err := c.readLimited(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return body, nil
}

// CGMinerCommand sends one command to a cgminer-style API (cgminer,
// bmminer, BOSminer, TeamRedMiner) at addr and returns the JSON reply without
// its NUL terminator. The miner closes the connection after replying.
func (c *Client) CGMinerCommand(ctx context.Context, addr, command string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cgminer %s %s: %w: %w", addr, command, ErrUnreachable, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Closing on cancel unblocks the read when the caller gives up before
	// the deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	req, _ := json.Marshal(struct {
		Command   string `json:"command"`
		Parameter string `json:"parameter"`
	}{command, ""})
	if _, err := conn.Write(req); err != nil {
		return nil, fmt.Errorf("cgminer %s %s: %w: %w", addr, command, ErrUnreachable, ctxErr(ctx, err))
	}
	// The reply ends with NUL and the miner closes the socket; stop at the
	// NUL so a firmware that keeps the socket open does not cost a timeout.
	body, err := c.readLimited(&untilNUL{r: conn})
	if err != nil {
		return nil, fmt.Errorf("cgminer %s %s: %w", addr, command, ctxErr(ctx, err))
	}
	if i := bytes.IndexByte(body, 0); i >= 0 {
		body = body[:i]
	}
	return bytes.TrimSpace(body), nil
}

// TCPRead connects to addr, writes send (when not empty) and reads the
// answer until the peer closes or the bytes read so far are a whole JSON
// value: the raw stats APIs of older miners (lolMiner 0.x, ccminer) work
// this way.
func (c *Client) TCPRead(ctx context.Context, addr string, send []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp %s: %w: %w", addr, ErrUnreachable, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if len(send) > 0 {
		if _, err := conn.Write(send); err != nil {
			return nil, fmt.Errorf("tcp %s: %w: %w", addr, ErrUnreachable, ctxErr(ctx, err))
		}
	}
	body, err := c.readLimited(&untilJSON{r: conn})
	if err != nil {
		return nil, fmt.Errorf("tcp %s: %w", addr, ctxErr(ctx, err))
	}
	return body, nil
}

// untilJSON reports EOF once the bytes read form one whole JSON value or
// end with a NUL, so a miner that keeps the socket open costs no timeout.
type untilJSON struct {
	r    io.Reader
	buf  []byte
	done bool
}

func (u *untilJSON) Read(p []byte) (int, error) {
	if u.done {
		return 0, io.EOF
	}
	n, err := u.r.Read(p)
	u.buf = append(u.buf, p[:n]...)
	if t := bytes.TrimSpace(u.buf); bytes.IndexByte(p[:n], 0) >= 0 || (len(t) > 0 && (t[0] == '{' || t[0] == '[') && json.Valid(t)) {
		u.done = true
	}
	return n, err
}

// readLimited reads r to EOF, failing with ErrTooLarge past maxBytes and
// with ErrUnreachable on an empty reply.
func (c *Client) readLimited(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, c.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading reply: %w", ErrUnreachable, err)
	}
	if int64(len(body)) > c.maxBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, c.maxBytes)
	}
	if len(bytes.TrimSpace(bytes.Trim(body, "\x00"))) == 0 {
		// A connection closed without a byte is a miner that did not
		// answer.
		return nil, fmt.Errorf("%w: empty reply", ErrUnreachable)
	}
	return body, nil
}

// untilNUL reports EOF once a NUL byte has been read.
type untilNUL struct {
	r    io.Reader
	done bool
}

func (u *untilNUL) Read(p []byte) (int, error) {
	if u.done {
		return 0, io.EOF
	}
	n, err := u.r.Read(p)
	if bytes.IndexByte(p[:n], 0) >= 0 {
		u.done = true
	}
	return n, err
}

// ctxErr prefers the context's reason (deadline) over the "use of closed
// connection" that closing the socket on cancel produces.
func ctxErr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The socket deadline is the context's deadline; it can fire a
		// hair before the context's own timer does.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}

// Endpoint is where a miner's stats API listens.
type Endpoint struct {
	Host  string // default 127.0.0.1
	Port  int
	Token string // xmrig access token; sent as a Bearer token
}

func (e Endpoint) addr() string {
	h := e.Host
	if h == "" {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, strconv.Itoa(e.Port))
}

func (e Endpoint) url(path string) string { return "http://" + e.addr() + path }

func (e Endpoint) validate() error {
	if e.Port <= 0 || e.Port > 65535 {
		return configErr("api port %d out of range 1-65535", e.Port)
	}
	return nil
}
