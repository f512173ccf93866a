package backtest

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteText prints the report as an aligned table, one row per rig and a
// total.
func (r Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "backtest %s..%s, %d days; %s\n", r.From, r.To, r.Days, r.Assumption)
	fmt.Fprintf(w, "policy: relative %.1f%%, absolute $%.2f/day, dwell %s, switch downtime %s, smoothing %.2f, curtail below $%.2f/day\n\n",
		r.Policy.RelativeThreshold*100, r.Policy.AbsoluteThreshold, r.Policy.MinDwell, r.Policy.SwitchDowntime, r.Policy.Smoothing, r.Policy.CurtailBelow)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rig\tpolicy $\toracle $\tof oracle\tgreedy $\tsingle $\tsingle coin\tsw/day policy\tsw/day oracle\tsw/day greedy\toff days p/o\tloss on oracle-off $\t")
	row := func(rr RigReport) {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.1f%%\t%.2f\t%.2f\t%s\t%.3f\t%.3f\t%.3f\t%d/%d\t%.2f\t\n",
			rr.Rig, rr.Policy.Profit, rr.Oracle.Profit, rr.PolicyVsOracle()*100, rr.Greedy.Profit, rr.BestSingle.Profit, rr.BestSingleCoin,
			rr.Policy.SwitchesPerDay, rr.Oracle.SwitchesPerDay, rr.Greedy.SwitchesPerDay, rr.Policy.OffDays, rr.Oracle.OffDays, rr.PolicyLossOnOracleOff)
	}
	for _, rr := range r.Rigs {
		row(rr)
	}
	row(r.Total)
	return tw.Flush()
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
