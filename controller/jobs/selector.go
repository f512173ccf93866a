package jobs

import (
	"slices"
	"strings"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
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
