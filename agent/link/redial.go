package link

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc"
)

// Redialer is a connection to whichever controller the agent currently
// uses: it dials that address on first use and again whenever the current
// address changes, so everything the agent asks of the controller follows
// the link's failover. It is a grpc.ClientConnInterface, safe for
// concurrent use.
type Redialer struct {
	ctrls *Controllers
	dial  func(addr string) (*grpc.ClientConn, error)

	mu     sync.Mutex
	addr   string
	conn   *grpc.ClientConn
	closed bool
}

// NewRedialer returns a Redialer over ctrls; dial makes the connection to
// one address (grpc.NewClient connects lazily, so dial does not block).
func NewRedialer(ctrls *Controllers, dial func(addr string) (*grpc.ClientConn, error)) *Redialer {
	return &Redialer{ctrls: ctrls, dial: dial}
}

var errRedialerClosed = errors.New("controller connection closed")

// Conn is the connection to the current controller and its address. A
// connection to a previous address is closed: calls still running on it
// fail, and callers retry as they do after any controller failure.
func (r *Redialer) Conn() (*grpc.ClientConn, string, error) {
	addr := r.ctrls.Current()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, addr, errRedialerClosed
	}
	if r.conn != nil && r.addr == addr {
		return r.conn, addr, nil
	}
	conn, err := r.dial(addr)
	if err != nil {
		return nil, addr, err
	}
	if r.conn != nil {
		r.conn.Close()
	}
	r.conn, r.addr = conn, addr
	return conn, addr, nil
}

// Invoke implements grpc.ClientConnInterface.
func (r *Redialer) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	conn, _, err := r.Conn()
	if err != nil {
		return err
	}
	return conn.Invoke(ctx, method, args, reply, opts...)
}

// NewStream implements grpc.ClientConnInterface.
func (r *Redialer) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	conn, _, err := r.Conn()
	if err != nil {
		return nil, err
	}
	return conn.NewStream(ctx, desc, method, opts...)
}

// Close closes the current connection; later calls fail.
func (r *Redialer) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.conn == nil {
		return nil
	}
	err := r.conn.Close()
	r.conn = nil
	return err
}
