package ctl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/quarryfleet/quarry/pkg/ocprofile"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func (a *App) rigOCCmd() *cobra.Command {
	var (
		profile string
		clear   bool
		wait    bool
		ttl     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "oc RIG (--profile FILE | --clear)",
		Short: "Set or clear a rig's GPU overclock profiles",
		Long: `Sends an overclock profile file to a rig and waits for the result.
The rig checks every targeted card against its own limits first: a value
outside them refuses the whole file and changes nothing. --clear removes
the profiles and puts every card back to its defaults.`,
		Example:           "  quarryctl rig oc rig-01 --profile eco.yaml\n  quarryctl rig oc rig-01 --clear",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := ocPayload(profile, clear)
			if err != nil {
				return err
			}
			return a.sendCommand(cmd.Context(), &quarryv1.SendCommandRequest{
				Rig: args[0], Kind: quarryv1.CommandKind_COMMAND_KIND_SET_OVERCLOCK,
				Payload: payload, TtlSeconds: int64(ttl / time.Second),
			}, wait)
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "profile", "", "overclock profile file (YAML, see the agent's oc package)")
	f.BoolVar(&clear, "clear", false, "remove the rig's profiles and restore card defaults")
	f.BoolVar(&wait, "wait", true, "wait for the rig's result")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the command waits for an offline rig")
	cmd.MarkFlagsMutuallyExclusive("profile", "clear")
	cmd.MarkFlagsOneRequired("profile", "clear")
	_ = cmd.MarkFlagFilename("profile", "yaml", "yml")
	return cmd
}

// ocPayload reads and checks the profile file here, so a typo is reported
// before anything is sent; limits of the cards are checked on the rig.
func ocPayload(path string, clear bool) ([]byte, error) {
	if clear {
		return nil, nil
	}
	if path == "" {
		return nil, errors.New("--profile: file name is empty")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--profile: %w", err)
	}
	f, err := ocprofile.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("--profile %s: %w", path, err)
	}
	if len(f.Profiles) == 0 {
		return nil, fmt.Errorf("--profile %s: no profiles; use --clear to remove overclocks", path)
	}
	return b, nil
}
