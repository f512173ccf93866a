package fleet

import (
	"sort"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// SelectorRig describes a rig for selector matching (flight sheets, jobs).
// A rig without a name goes by its id; each label is offered as "key" and,
// when it has a value, as "key=value"; GPUs by model name. Labels are set
// by an operator on the controller; what a rig reports about itself (its
// tags) never moves it into or out of a selection.
func SelectorRig(r *quarryv1.Rig) flightsheet.Rig {
	out := flightsheet.Rig{ID: r.Id, Name: r.Name}
	if out.Name == "" {
		out.Name = r.Id
	}
	for k, v := range r.Labels {
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
