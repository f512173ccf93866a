package ctl

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func (a *App) alertsCmd() *cobra.Command {
	var resolved uint32
	c := &cobra.Command{
		Use:   "alerts",
		Short: "List firing alerts, and recently resolved ones, with where their messages went",
		Long: `Lists the alerts the controller's rules found (rig offline, GPU hot or
lost, miner down or crash-looping, hashrate below expected, customer past
due, market data stale), oldest first, with the state of the latest message
on each notification channel: pending, failing (with the error and the next
attempt), delivered or dropped.`,
		Example: "  quarryctl alerts\n  quarryctl alerts --resolved 20\n  quarryctl alerts test",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewNotifyServiceClient, quarryv1.NotifyServiceClient.ListAlerts, &quarryv1.ListAlertsRequest{Resolved: resolved})
			if err != nil {
				return err
			}
			now := time.Now()
			return a.render(resp, func() error {
				if len(resp.Channels) == 0 {
					fmt.Fprintln(a.Out, "no notification channels configured (notify.webhooks, notify.smtp): alerts are shown, not sent")
				}
				t := newTable(a.Out, "STATE", "SEVERITY", "RIG", "ALERT", "SINCE", "DELIVERY")
				for _, al := range resp.Alerts {
					since := ago(al.SinceUnixMs*1e6, now)
					if al.State == "resolved" {
						since = "resolved " + ago(al.ResolvedUnixMs*1e6, now)
					}
					rig := al.RigName
					if rig == "" {
						rig = "-"
					}
					t.row(al.State, al.Severity, rig, al.Message, since, deliverySummary(al.Deliveries, now))
				}
				return t.flush()
			})
		},
	}
	c.Flags().Uint32Var(&resolved, "resolved", 0, "also list this many recently resolved alerts (at most 500)")
	c.AddCommand(a.alertsTestCmd())
	return c
}

// deliverySummary is one cell: each channel's latest message state.
func deliverySummary(ds []*quarryv1.AlertDelivery, now time.Time) string {
	if len(ds) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(ds))
	for _, d := range ds {
		s := d.Channel + ": " + d.Kind + " " + d.State
		if d.State == "failing" {
			s += fmt.Sprintf(" (%d attempts, %s; next in %s)", d.Attempts, d.LastError, time.UnixMilli(d.NextAttemptUnixMs).Sub(now).Round(time.Second).String())
		}
		if d.State == "dropped" && d.LastError != "" {
			s += " (" + d.LastError + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func (a *App) alertsTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test",
		Short: "Send a test message to every notification channel and show how each went (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// A mail relay may take up to 20 s to answer.
			a.Opts.Timeout = max(a.Opts.Timeout, 45*time.Second)
			resp, err := fetch(a, cmd.Context(), quarryv1.NewNotifyServiceClient, quarryv1.NotifyServiceClient.TestNotification, &quarryv1.TestNotificationRequest{})
			if err != nil {
				return err
			}
			failed := 0
			err = a.renderTable(resp, []string{"CHANNEL", "RESULT"}, func(t *table) {
				for _, r := range resp.Results {
					res := "ok"
					if !r.Ok {
						res, failed = "failed: "+r.Error, failed+1
					}
					t.row(r.Channel, res)
				}
			})
			if err == nil && failed > 0 {
				err = fmt.Errorf("%d of %d channels failed", failed, len(resp.Results))
			}
			return err
		},
	}
}
