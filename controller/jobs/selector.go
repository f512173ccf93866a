package jobs

import (
	"slices"
	"sort"
	"strings"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// parseSelector reads the selector of "agent:<selector>" with the flight
// sheet grammar (name=glob, tag=glob, gpu=model). Any other key=value term
// is shorthand for a tag: "site=reykjavik" means "tag=site=reykjavik".
func parseSelector(s string) (flightsheet.Selector, error) {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if ok && !slices.Contains([]string{"name", "tag", "gpu"}, k) {
			parts[i] = "tag=" + k + "=" + strings.TrimSpace(v)
		}
	}
	return flightsheet.ParseSelector(strings.Join(parts, ","))
}

// rigForSelector describes a rig for selector matching. A rig's tags are
// key/value pairs; each is offered as "key=value" and as "key".
func rigForSelector(r *quarryv1.Rig) flightsheet.Rig {
	out := flightsheet.Rig{Name: rigLabel(r)}
	for k, v := range r.Tags {
		out.Tags = append(out.Tags, k)
		if v != "" {
			out.Tags = append(out.Tags, k+"="+v)
		}
	}
	sort.Strings(out.Tags)
	for _, g := range r.Gpus {
		out.GPUs = append(out.GPUs, g.Name)
	}
	return out
}
