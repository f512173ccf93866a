package notify

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/quarryfleet/quarry/controller/auth"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// NotifyRoles is the least role each NotifyService method needs: anyone
// may read the alerts; sending to the channels is an admin's call, as it
// reaches people outside the controller.
var NotifyRoles = map[string]string{
	quarryv1.NotifyService_ListAlerts_FullMethodName:       auth.RoleViewer,
	quarryv1.NotifyService_TestNotification_FullMethodName: auth.RoleAdmin,
}

// NotifyAudit is the audit action of each NotifyService method that acts.
var NotifyAudit = map[string]string{
	quarryv1.NotifyService_TestNotification_FullMethodName: "notify test",
}

// maxListResolved bounds the resolved alerts one ListAlerts returns.
const maxListResolved = 500

// NotifyServer is quarry.v1.NotifyService.
type NotifyServer struct {
	quarryv1.UnimplementedNotifyServiceServer
	N *Notifier
}

// ListAlerts lists the firing alerts, oldest first, then the most recently
// resolved, newest first.
func (s *NotifyServer) ListAlerts(_ context.Context, req *quarryv1.ListAlertsRequest) (*quarryv1.ListAlertsResponse, error) {
	resp := &quarryv1.ListAlertsResponse{Channels: s.N.Channels()}
	for _, r := range s.N.Firing() {
		resp.Alerts = append(resp.Alerts, AlertProto(r))
	}
	for _, r := range s.N.Resolved(int(min(req.GetResolved(), maxListResolved))) {
		resp.Alerts = append(resp.Alerts, AlertProto(r))
	}
	return resp, nil
}

// TestNotification sends a test message to every channel.
func (s *NotifyServer) TestNotification(ctx context.Context, _ *quarryv1.TestNotificationRequest) (*quarryv1.TestNotificationResponse, error) {
	note := auth.Note(ctx)
	res, err := s.N.SendTest(ctx, auth.CallerFrom(ctx).Name)
	if err != nil {
		return nil, auth.StatusError(err, func(err error) (codes.Code, bool) {
			if errors.Is(err, ErrNoChannels) {
				return codes.FailedPrecondition, true
			}
			return codes.OK, false
		})
	}
	resp := &quarryv1.TestNotificationResponse{}
	var parts []string
	for _, r := range res {
		cr := &quarryv1.ChannelResult{Channel: r.Channel, Ok: r.Err == nil}
		part := r.Channel + ": ok"
		if r.Err != nil {
			cr.Error = clean(r.Err.Error(), 300)
			part = r.Channel + ": " + cr.Error
		}
		parts = append(parts, part)
		resp.Results = append(resp.Results, cr)
	}
	note.Target, note.Detail = "all channels", clean(strings.Join(parts, "; "), 1024)
	return resp, nil
}

// AlertProto is a stored alert as NotifyService shows it: the latest
// message on each channel.
func AlertProto(r Record) *quarryv1.NotifyAlert {
	a := &quarryv1.NotifyAlert{Key: r.Key, Rule: r.Rule, RigId: r.RigID, RigName: r.RigName, Subject: r.Subject, Severity: r.Severity,
		Message: r.Message, State: r.State, SinceUnixMs: r.Since.UnixMilli()}
	if !r.Resolved.IsZero() {
		a.ResolvedUnixMs = r.Resolved.UnixMilli()
	}
	for _, d := range Latest(r.Deliveries) {
		pd := &quarryv1.AlertDelivery{Channel: d.Channel, Kind: d.Msg.Kind, State: d.State, Attempts: uint32(d.Attempts), LastError: d.LastError}
		if !d.Next.IsZero() && !d.final() {
			pd.NextAttemptUnixMs = d.Next.UnixMilli()
		}
		if d.State == DeliveryDelivered {
			pd.DeliveredUnixMs = d.Done.UnixMilli()
		}
		a.Deliveries = append(a.Deliveries, pd)
	}
	return a
}

// Latest is, per channel, the first message still to go, else the last
// one: what a person wants to know about the channel for this alert.
func Latest(ds []Delivery) []Delivery {
	var out []Delivery
	idx := map[string]int{}
	for _, d := range ds {
		i, ok := idx[d.Channel]
		switch {
		case !ok:
			idx[d.Channel] = len(out)
			out = append(out, d)
		case out[i].final():
			out[i] = d
		}
	}
	return out
}
