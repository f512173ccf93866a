package ctl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func (a *App) operatorCmd() *cobra.Command {
	c := &cobra.Command{Use: "operator", Short: "Maintain the controllers themselves: backups, restores and the Raft group"}
	snap := &cobra.Command{Use: "snapshot", Short: "Save or restore a consistent copy of the controller's database"}
	snap.AddCommand(a.snapshotSaveCmd(), a.snapshotRestoreCmd())
	c.AddCommand(snap, a.raftCmd())
	return c
}

func (a *App) snapshotSaveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Save a consistent online copy of the controller's database",
		Long: `Copies the controller's database from one read transaction while it goes
on serving, and writes it to FILE once the whole copy has arrived and its
sha256 matches the controller's. The copy holds every rig, token hash,
flight sheet, command, profit decision, billing fact and audit entry; it
does not hold the CA key, the gossip keys or miner archives, which live as
files in the data directory and are backed up as such. Keep it as safe as
the database: it holds billing facts and token hashes. Needs the admin role.`,
		Example: "  quarryctl operator snapshot save quarry-$(date +%F).snap",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.Opts.Timeout = max(a.Opts.Timeout, 30*time.Minute)
			return a.callConn(cmd.Context(), func(ctx context.Context, conn grpc.ClientConnInterface) error {
				last, err := saveSnapshot(ctx, quarryv1.NewOperatorServiceClient(conn), args[0])
				if err != nil {
					return err
				}
				return a.renderDone(last, "saved %s: %s, sha256 %s", args[0], bytesHuman(uint64(last.Size)), last.Sha256)
			})
		},
	}
}

// saveSnapshot writes the streamed copy to a temporary file beside path
// and renames it into place only when its size and sha256 match.
func saveSnapshot(ctx context.Context, c quarryv1.OperatorServiceClient, path string) (*quarryv1.SnapshotChunk, error) {
	stream, err := c.SaveSnapshot(ctx, &quarryv1.SaveSnapshotRequest{})
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".partial-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return nil, err
	}
	h := sha256.New()
	var n int64
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the controller ended the snapshot before its last piece; nothing was written")
		}
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(chunk.Data); err != nil {
			return nil, err
		}
		h.Write(chunk.Data)
		n += int64(len(chunk.Data))
		if !chunk.Last {
			continue
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != chunk.Sha256 || n != chunk.Size {
			return nil, fmt.Errorf("snapshot arrived damaged: %d bytes, sha256 %s; the controller sent %d bytes, sha256 %s", n, got, chunk.Size, chunk.Sha256)
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		chunk.Data = nil
		return chunk, os.Rename(f.Name(), path)
	}
}

func (a *App) snapshotRestoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Stage a saved snapshot; the controller restores it at its next start",
		Long: `Uploads a snapshot saved with 'snapshot save'. The controller checks it in
full (size and sha256, bbolt's consistency check, the buckets a controller
database holds) and stages it; at its next start it moves the snapshot into
place before anything opens the database, keeping the database it replaced
as quarry.db.before-restore-TIME. Restart the controller to apply it. To
restore onto a new machine, copy the old data directory's pki/ and gossip
key files there first, so rigs keep trusting it. Needs the admin role.`,
		Example: "  quarryctl operator snapshot restore quarry-2026-12-01.snap && systemctl restart quarry-controller",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.Opts.Timeout = max(a.Opts.Timeout, 30*time.Minute)
			return a.callConn(cmd.Context(), func(ctx context.Context, conn grpc.ClientConnInterface) error {
				resp, err := restoreSnapshot(ctx, quarryv1.NewOperatorServiceClient(conn), args[0])
				if err != nil {
					return err
				}
				return a.renderDone(resp, "staged %s (%s, sha256 %s): %d rigs, %d flight sheets, %d customers.\nRestart the controller to restore it; the database it replaces is kept beside it.",
					args[0], bytesHuman(uint64(resp.Size)), resp.Sha256, resp.Rigs, resp.FlightSheets, resp.Customers)
			})
		},
	}
}

// restoreSnapshot uploads path in chunks, then its size and sha256.
func restoreSnapshot(ctx context.Context, c quarryv1.OperatorServiceClient, path string) (*quarryv1.RestoreSnapshotResponse, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	stream, err := c.RestoreSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	send := func(m *quarryv1.RestoreSnapshotRequest) error {
		if err := stream.Send(m); err != nil {
			if errors.Is(err, io.EOF) { // the controller refused; its reason follows
				_, err = stream.CloseAndRecv()
			}
			return err
		}
		return nil
	}
	h := sha256.New()
	buf := make([]byte, uploadChunk)
	var n int64
	for {
		k, err := io.ReadFull(f, buf)
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
			if err := send(&quarryv1.RestoreSnapshotRequest{Data: buf[:k]}); err != nil {
				return nil, err
			}
			buf = make([]byte, uploadChunk) // the sent slice may still be queued
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if err := send(&quarryv1.RestoreSnapshotRequest{Last: true, Size: n, Sha256: hex.EncodeToString(h.Sum(nil))}); err != nil {
		return nil, err
	}
	return stream.CloseAndRecv()
}
