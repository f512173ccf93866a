package ctl

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/termsafe"
)

// fetch makes one call of any admin service and returns its answer:
//
//	resp, err := fetch(a, ctx, quarryv1.NewMinerServiceClient, quarryv1.MinerServiceClient.ListEvents, req)
//
// The client is built from the method expression's receiver, so every
// service goes through the same dial, deadline and error advice.
func fetch[C any, Q any, R proto.Message](a *App, ctx context.Context, client func(grpc.ClientConnInterface) C,
	method func(C, context.Context, Q, ...grpc.CallOption) (R, error), req Q) (R, error) {
	var resp R
	err := a.callConn(ctx, func(ctx context.Context, conn grpc.ClientConnInterface) error {
		var err error
		resp, err = method(client(conn), ctx, req)
		return err
	})
	return resp, err
}

// render prints m as JSON under -o json; otherwise text prints it for a
// person.
func (a *App) render(m proto.Message, text func() error) error {
	if a.Opts.Output == "json" {
		return a.json(m)
	}
	return text()
}

// renderTable is render for the usual table: a header line, then the rows
// that rows adds.
func (a *App) renderTable(m proto.Message, header []string, rows func(t *table)) error {
	return a.render(m, func() error {
		t := newTable(a.Out, header...)
		rows(t)
		return t.flush()
	})
}

// renderDone is render for a change whose text answer is one line.
func (a *App) renderDone(m proto.Message, format string, args ...any) error {
	return a.render(m, func() error {
		_, err := fmt.Fprintf(a.Out, format+"\n", args...)
		return err
	})
}

// table prints aligned columns. Every cell is one terminal-safe line: a
// name, message or error that holds a tab, newline or escape sequence
// cannot shift columns, forge rows or drive the terminal.
type table struct{ tw *tabwriter.Writer }

// newTable starts a table on w; with a header, it is the first line.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	if len(header) > 0 {
		fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	}
	return t
}

// row adds one line; each cell is printed as with fmt.Sprint.
func (t *table) row(cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = termsafe.Line(fmt.Sprint(c))
	}
	fmt.Fprintln(t.tw, strings.Join(s, "\t"))
}

// flush writes the aligned table.
func (t *table) flush() error { return t.tw.Flush() }
