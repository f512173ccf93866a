package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// uploadChunk is the size of the archive pieces sent to the controller.
const uploadChunk = 256 << 10

func (a *App) minerCmd() *cobra.Command {
	c := &cobra.Command{Use: "miner", Short: "Keep the miner catalogue rigs download their miners from"}
	c.AddCommand(a.minerAddCmd(), a.minerListCmd(), a.minerRemoveCmd())
	return c
}

func (a *App) minerAddCmd() *cobra.Command {
	var file, url, binary string
	add := &cobra.Command{
		Use:   "add NAME VERSION (--file ARCHIVE | --url URL)",
		Short: "Add a miner archive (tar.gz or zip) to the catalogue",
		Long: `Uploads a miner's release archive, or has the controller fetch it over
https, and pins its sha256. Flight sheets then name the miner and version
instead of a path and sha256; rigs download the archive from the controller,
check it and unpack it into their miners directory. A version is pinned
once added: remove it to replace it.`,
		Example: "  quarryctl miner add xmrig 6.26.0 --file xmrig-6.26.0-linux-static-x64.tar.gz\n" +
			"  quarryctl miner add lolminer 1.98 --url https://example.org/lolMiner_v1.98_Lin64.tar.gz --binary 1.98/lolMiner",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (file == "") == (url == "") {
				return errors.New("give exactly one of --file and --url")
			}
			var r io.Reader
			if file != "" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("--file: %w", err)
				}
				defer f.Close()
				r = f
			}
			// Uploading or fetching a large archive takes longer than a call.
			a.Opts.Timeout = max(a.Opts.Timeout, 30*time.Minute)
			return a.callConn(cmd.Context(), func(ctx context.Context, conn grpc.ClientConnInterface) error {
				resp, err := addMiner(ctx, quarryv1.NewCatalogueServiceClient(conn), &quarryv1.AddMinerHeader{Name: args[0], Version: args[1], Url: url, Binary: binary}, r)
				if err != nil {
					return err
				}
				m := resp.Miner
				return a.renderDone(resp, "added %s %s: %s archive, %s, sha256 %s; program %s (sha256 %s)",
					m.Name, m.Version, m.Format, bytesHuman(uint64(m.Size)), m.Sha256, m.Binary, m.BinarySha256)
			})
		},
	}
	add.Flags().StringVar(&file, "file", "", "the archive to upload")
	add.Flags().StringVar(&url, "url", "", "an https address the controller fetches the archive from")
	add.Flags().StringVar(&binary, "binary", "", "the miner program's path inside the archive (default: the file named like the miner, else the one executable)")
	_ = add.MarkFlagFilename("file", "tar.gz", "tgz", "zip")
	return add
}

// addMiner sends the header, then r's bytes in chunks when r is set.
func addMiner(ctx context.Context, c quarryv1.CatalogueServiceClient, h *quarryv1.AddMinerHeader, r io.Reader) (*quarryv1.AddMinerResponse, error) {
	stream, err := c.AddMiner(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&quarryv1.AddMinerRequest{Msg: &quarryv1.AddMinerRequest_Header{Header: h}}); err != nil {
		return nil, recvAfter(stream, err)
	}
	if r != nil {
		buf := make([]byte, uploadChunk)
		for {
			n, rerr := r.Read(buf)
			if n > 0 {
				if err := stream.Send(&quarryv1.AddMinerRequest{Msg: &quarryv1.AddMinerRequest_Chunk{Chunk: buf[:n]}}); err != nil {
					return nil, recvAfter(stream, err)
				}
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				return nil, fmt.Errorf("--file: %w", rerr)
			}
		}
	}
	return stream.CloseAndRecv()
}

// recvAfter returns the server's reason when a send failed because the
// server ended the call (it refused the upload).
func recvAfter(stream quarryv1.CatalogueService_AddMinerClient, sendErr error) error {
	if errors.Is(sendErr, io.EOF) {
		if _, err := stream.CloseAndRecv(); err != nil {
			return err
		}
	}
	return sendErr
}

func (a *App) minerListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list [NAME]",
		Short: "List the catalogue's miners and versions",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &quarryv1.ListMinersRequest{}
			if len(args) == 1 {
				req.Name = args[0]
			}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewCatalogueServiceClient, quarryv1.CatalogueServiceClient.ListMiners, req)
			if err != nil {
				return err
			}
			return a.renderTable(resp, []string{"NAME", "VERSION", "FORMAT", "SIZE", "SHA256", "PROGRAM", "ADDED", "BY"}, func(t *table) {
				for _, m := range resp.Miners {
					t.row(m.Name, m.Version, m.Format, bytesHuman(uint64(m.Size)), m.Sha256, m.Binary, time.Unix(m.AddedUnix, 0).UTC().Format(time.RFC3339), m.AddedBy)
				}
			})
		},
	}
}

func (a *App) minerRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME VERSION",
		Short: "Remove a miner version from the catalogue (rigs keep what they unpacked)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewCatalogueServiceClient, quarryv1.CatalogueServiceClient.RemoveMiner, &quarryv1.RemoveMinerRequest{Name: args[0], Version: args[1]})
			if err != nil {
				return err
			}
			return a.renderDone(resp, "removed %s %s", args[0], args[1])
		},
	}
}
