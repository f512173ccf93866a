package ctl

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func (a *App) customerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "customer", Aliases: []string{"customers"}, Short: "Hosting customers billed through Stripe (admin)"}
	cmd.AddCommand(a.customerCreateCmd(), a.customerListCmd(), a.customerShowCmd(), a.customerAssignCmd(), a.customerUnassignCmd())
	return cmd
}

func (a *App) customerCreateCmd() *cobra.Command {
	var id, email, plan string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a customer; the Stripe customer and subscription follow through the outbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.CreateCustomer,
				&quarryv1.CreateCustomerRequest{Id: id, Name: args[0], Email: email, Plan: plan})
			if err != nil {
				return err
			}
			return a.renderDone(resp, "created customer %s (%s) on plan %s", resp.Customer.Id, resp.Customer.Name, resp.Customer.Plan)
		},
	}
	create.Flags().StringVar(&id, "id", "", "customer id (default: derived from NAME)")
	create.Flags().StringVar(&email, "email", "", "billing email address (required)")
	create.Flags().StringVar(&plan, "plan", "", "plan id from 'quarryctl plan create' (required)")
	_ = create.MarkFlagRequired("email")
	_ = create.MarkFlagRequired("plan")
	return create
}

func (a *App) customerListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List customers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.ListCustomers, &quarryv1.ListCustomersRequest{})
			if err != nil {
				return err
			}
			return a.renderTable(resp, []string{"ID", "NAME", "EMAIL", "PLAN", "RIGS", "STATUS", "STRIPE"}, func(t *table) {
				for _, cu := range resp.Customers {
					t.row(cu.Id, cu.Name, cu.Email, cu.Plan, len(cu.Rigs), cu.Status, dash(cu.StripeCustomerId))
				}
			})
		},
	}
}

func (a *App) customerShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one customer",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.GetCustomer, &quarryv1.GetCustomerRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.render(resp, func() error { return printCustomer(a.Out, resp.Customer) })
		},
	}
}

func (a *App) customerAssignCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "assign CUSTOMER RIG...",
		Short: "Give rigs (ids or names) to a customer; energy up to now stays with the previous owner",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.AssignRigs,
				&quarryv1.AssignRigsRequest{Customer: args[0], Rigs: args[1:]})
			if err != nil {
				return err
			}
			return a.renderDone(resp, "assigned %s to %s (now %d rigs)", strings.Join(resp.RigIds, ", "), args[0], len(resp.Customer.GetRigs()))
		},
	}
}

func (a *App) customerUnassignCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unassign RIG...",
		Short: "Take rigs away from their customer",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.AssignRigs, &quarryv1.AssignRigsRequest{Rigs: args})
			if err != nil {
				return err
			}
			return a.renderDone(resp, "unassigned %s", strings.Join(resp.RigIds, ", "))
		},
	}
}

func printCustomer(w io.Writer, c *quarryv1.BillingCustomer) error {
	t := newTable(w)
	t.row("ID", c.Id)
	t.row("Name", c.Name)
	t.row("Email", dash(c.Email))
	t.row("Plan", c.Plan)
	t.row("Status", c.Status)
	if c.PastDueSinceUnixNano != 0 {
		t.row("Past due since", time.Unix(0, c.PastDueSinceUnixNano).UTC().Format(time.RFC3339))
	}
	t.row("Rigs", dash(strings.Join(c.Rigs, ", ")))
	t.row("Stripe customer", dash(c.StripeCustomerId))
	t.row("Stripe subscription", dash(c.StripeSubscriptionId))
	if c.CreatedUnixNano != 0 {
		t.row("Created", time.Unix(0, c.CreatedUnixNano).UTC().Format(time.RFC3339))
	}
	return t.flush()
}

func (a *App) planCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "plan", Aliases: []string{"plans"}, Short: "Hosting plans (admin)"}
	cmd.AddCommand(a.planCreateCmd())
	return cmd
}

func (a *App) planCreateCmd() *cobra.Command {
	var name, fee, kwh, rigPrice, energyPrice string
	create := &cobra.Command{
		Use:   "create ID",
		Short: "Create or replace a plan: a monthly fee per rig plus energy per kWh",
		Example: "  quarryctl plan create standard --fee-per-rig 45 --price-per-kwh 0.125 \\\n" +
			"    --stripe-price price_1RigMonthly --stripe-energy-price price_1EnergyWh",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cents, err := ParseDecimal(fee, 2)
			if err != nil {
				return fmt.Errorf("--fee-per-rig: %w", err)
			}
			milli, err := ParseDecimal(kwh, 5)
			if err != nil {
				return fmt.Errorf("--price-per-kwh: %w", err)
			}
			p := &quarryv1.BillingPlan{Id: args[0], Name: name, MonthlyFeePerRigCents: cents, EnergyMillicentsPerKwh: milli,
				StripeRigPriceId: rigPrice, StripeEnergyPriceId: energyPrice}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.CreatePlan, &quarryv1.CreatePlanRequest{Plan: p})
			if err != nil {
				return err
			}
			return a.renderDone(resp, "plan %s: %s per rig per month, %s per kWh", resp.Plan.Id,
				FormatDecimal(resp.Plan.MonthlyFeePerRigCents, 2), FormatDecimal(resp.Plan.EnergyMillicentsPerKwh, 5))
		},
	}
	f := create.Flags()
	f.StringVar(&name, "name", "", "display name (default: ID)")
	f.StringVar(&fee, "fee-per-rig", "", "monthly fee per rig in currency units, e.g. 45 or 45.50 (required)")
	f.StringVar(&kwh, "price-per-kwh", "", "energy price per kWh in currency units, up to 5 decimals, e.g. 0.125 (required)")
	f.StringVar(&rigPrice, "stripe-price", "", "Stripe recurring per-unit price id for the rig fee (required)")
	f.StringVar(&energyPrice, "stripe-energy-price", "", "Stripe metered price id attached to the energy meter")
	for _, n := range []string{"fee-per-rig", "price-per-kwh", "stripe-price"} {
		_ = create.MarkFlagRequired(n)
	}
	return create
}

func (a *App) billingCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "billing", Short: "Billing status, metered energy and the Stripe outbox"}
	cmd.AddCommand(a.billingStatusCmd(), a.billingUsageCmd(), a.billingOutboxCmd(), a.billingDeadLetterCmd(), a.billingRetryCmd())
	return cmd
}

func (a *App) billingStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status [CUSTOMER]",
		Short: "Each customer's standing, month-to-date energy and estimate, and undelivered Stripe calls",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &quarryv1.BillingStatusRequest{}
			if len(args) == 1 {
				req.Customer = args[0]
			}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.BillingStatus, req)
			if err != nil {
				return err
			}
			return a.render(resp, func() error {
				t := newTable(a.Out, "CUSTOMER", "STATUS", "ACTION", "PLAN", "RIGS", "ENERGY (MONTH)", "ESTIMATE", "PENDING", "DEAD", "GAPS", "STRIPE")
				for _, s := range resp.Customers {
					t.row(s.Customer.GetId(), s.Customer.GetStatus(), s.Action, s.Plan.GetId(), s.ActiveRigs, EnergyHuman(s.MonthToDateMilliWh),
						FormatDecimal(s.EstimateCents, 2), s.PendingRecords, s.DeadLetters, s.GapsThisMonth, dash(s.Customer.GetStripeCustomerId()))
				}
				if err := t.flush(); err != nil {
					return err
				}
				if m := resp.Meter; m != nil && (m.Backwards > 0 || m.LateMilliWh > 0 || m.Corrections > 0) {
					fmt.Fprintf(a.Err, "meter: %d out-of-order samples ignored, %s billed late in the hour it arrived, %s billed to its hour by %d corrections\n",
						m.Backwards, EnergyHuman(m.LateMilliWh), EnergyHuman(m.CorrectedMilliWh), m.Corrections)
				}
				return nil
			})
		},
	}
}

func (a *App) billingUsageCmd() *cobra.Command {
	var customer, rig, since, until string
	usage := &cobra.Command{
		Use:   "usage",
		Short: "Hourly metered energy for a customer or a rig, and telemetry gaps that were not billed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if customer == "" && rig == "" {
				return errors.New("give --customer or --rig")
			}
			now := time.Now()
			req := &quarryv1.UsageRequest{Customer: customer, Rig: rig}
			if since != "" {
				t, err := ParseSince(since, now)
				if err != nil {
					return fmt.Errorf("--since: %w", err)
				}
				req.SinceUnixNano = t.UnixNano()
			}
			if until != "" {
				t, err := ParseSince(until, now)
				if err != nil {
					return fmt.Errorf("--until: %w", err)
				}
				req.UntilUnixNano = t.UnixNano()
			}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.Usage, req)
			if err != nil {
				return err
			}
			return a.render(resp, func() error { return a.printUsage(resp) })
		},
	}
	usage.Flags().StringVar(&customer, "customer", "", "customer id")
	usage.Flags().StringVar(&rig, "rig", "", "rig id or name")
	usage.Flags().StringVar(&since, "since", "", "start: a duration back from now (24h), a date (2006-01-02) or RFC 3339 time (default: start of this UTC month)")
	usage.Flags().StringVar(&until, "until", "", "end, in the same forms (default: end of the current hour)")
	return usage
}

// printUsage writes metered hours with their total, then the telemetry
// gaps that were not billed.
func (a *App) printUsage(resp *quarryv1.UsageResponse) error {
	t := newTable(a.Out, "HOUR (UTC)", "RIG", "CUSTOMER", "ENERGY", "LATE", "STATE")
	for _, h := range resp.Hours {
		state := "open"
		if h.Closed {
			state = fmt.Sprintf("closed, %d Wh sent", h.ValueWh)
			if h.Corrections > 0 {
				state += fmt.Sprintf(" (%d corrections)", h.Corrections)
			}
			if h.PendingMilliWh > 0 {
				state += fmt.Sprintf(", %s to correct", EnergyHuman(h.PendingMilliWh))
			}
		}
		late := "-"
		if h.LateMilliWh > 0 {
			late = EnergyHuman(h.LateMilliWh)
		}
		t.row(time.Unix(0, h.HourUnixNano).UTC().Format("2006-01-02 15:00"), h.Rig, dash(h.Customer), EnergyHuman(h.MilliWh), late, state)
	}
	t.row("TOTAL", "", "", EnergyHuman(resp.TotalMilliWh), EnergyHuman(resp.LateMilliWh), "")
	if err := t.flush(); err != nil {
		return err
	}
	if resp.LateMilliWh > 0 {
		fmt.Fprintf(a.Out, "\nLATE: energy measured in an earlier hour that arrived after that hour's lateness window; billed in the hour it arrived.\n")
	}
	if len(resp.Gaps) == 0 {
		return nil
	}
	fmt.Fprintf(a.Out, "\n%d telemetry gap(s), not billed:\n", len(resp.Gaps))
	t = newTable(a.Out, "RIG", "FROM (UTC)", "TO (UTC)", "LENGTH")
	for _, g := range resp.Gaps {
		s, e := time.Unix(0, g.StartUnixNano).UTC(), time.Unix(0, g.EndUnixNano).UTC()
		t.row(g.Rig, s.Format(time.DateTime), e.Format(time.DateTime), e.Sub(s).Round(time.Second))
	}
	return t.flush()
}

func (a *App) billingOutboxCmd() *cobra.Command {
	var all bool
	outbox := &cobra.Command{
		Use:   "outbox",
		Short: "Stripe calls waiting to be delivered (--all includes delivered ones)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.ListOutbox, &quarryv1.ListOutboxRequest{All: all})
			if err != nil {
				return err
			}
			return a.renderRecords(resp, resp.Records)
		},
	}
	outbox.Flags().BoolVar(&all, "all", false, "include delivered records")
	return outbox
}

func (a *App) billingDeadLetterCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "deadletter",
		Aliases: []string{"dead-letter", "dead"},
		Short:   "Stripe calls that gave up; fix the cause, then 'quarryctl billing retry ID'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.ListDeadLetter, &quarryv1.ListDeadLetterRequest{})
			if err != nil {
				return err
			}
			return a.renderRecords(resp, resp.Records)
		},
	}
}

func (a *App) billingRetryCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "retry ID",
		Short: "Move a dead-letter record back into the outbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("record id %q: want a positive number from 'quarryctl billing deadletter'", args[0])
			}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewBillingServiceClient, quarryv1.BillingServiceClient.RetryOutbox, &quarryv1.RetryOutboxRequest{Id: id})
			if err != nil {
				return err
			}
			return a.renderDone(resp, "record %d queued again", id)
		},
	}
}

// renderRecords prints outbox records, the answer of both the outbox and
// the dead-letter listing.
func (a *App) renderRecords(resp proto.Message, recs []*quarryv1.OutboxRecord) error {
	return a.renderTable(resp, []string{"ID", "KIND", "STATE", "CUSTOMER", "RIG", "ATTEMPTS", "CREATED (UTC)", "RESULT / LAST ERROR"}, func(t *table) {
		for _, r := range recs {
			detail := r.Result
			if r.LastError != "" {
				detail = r.LastError
			}
			if r.State == "pending" && r.NextAttemptUnixNano != 0 {
				detail = fmt.Sprintf("next try %s; %s", time.Unix(0, r.NextAttemptUnixNano).UTC().Format(time.TimeOnly), detail)
			}
			t.row(r.Id, r.Kind, r.State, r.Customer, dash(r.Rig), r.Attempts, time.Unix(0, r.CreatedUnixNano).UTC().Format(time.DateTime), dash(detail))
		}
	})
}

// ParseDecimal reads a non-negative decimal amount exactly as an integer
// number of 10^-scale units: ParseDecimal("0.125", 5) is 12500.
func ParseDecimal(s string, scale int) (int64, error) {
	s = strings.TrimSpace(s)
	whole, frac, hasDot := strings.Cut(s, ".")
	if s == "" || (whole == "" && frac == "") || (hasDot && frac == "") {
		return 0, fmt.Errorf("%q is not an amount such as 12 or 0.125", s)
	}
	if len(frac) > scale {
		return 0, fmt.Errorf("%q has more than %d decimal places", s, scale)
	}
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a non-negative amount such as 12 or 0.125", s)
		}
	}
	digits := whole + frac + strings.Repeat("0", scale-len(frac))
	n, err := strconv.ParseInt(strings.TrimLeft(digits, "0")+"0", 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n / 10, nil
}

// FormatDecimal writes n units of 10^-scale as a decimal; it is the
// inverse of ParseDecimal, keeping at least two decimal places.
func FormatDecimal(n int64, scale int) string {
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	s := strconv.FormatInt(n, 10)
	if len(s) <= scale {
		s = strings.Repeat("0", scale-len(s)+1) + s
	}
	whole, frac := s[:len(s)-scale], s[len(s)-scale:]
	for len(frac) > 2 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	if frac == "" {
		return sign + whole
	}
	return sign + whole + "." + frac
}

// EnergyHuman shows milliwatt-hours as Wh or kWh with three decimals.
func EnergyHuman(mWh int64) string {
	if mWh >= 1_000_000 || mWh <= -1_000_000 {
		return FormatDecimal(mWh/1000, 3) + " kWh"
	}
	return FormatDecimal(mWh, 3) + " Wh"
}

// ParseSince reads a point in time: a duration back from now ("24h"), a
// date ("2006-01-02", UTC midnight) or an RFC 3339 time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration %q is negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (24h), a date (2006-01-02) nor an RFC 3339 time", s)
}
