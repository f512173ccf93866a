package gossip

import (
	"fmt"
	"maps"
	"strconv"
)

// Role is what a member is in the fleet.
type Role string

const (
	RoleAgent      Role = "agent"
	RoleController Role = "controller"
)

// Tag keys as they appear in serf (and in `serf members -detailed`). They are
// short because serf caps encoded tags at 512 bytes per member.
const (
	TagRole     = "role"
	TagRigID    = "rig"
	TagVersion  = "ver"
	TagGPUCount = "gpus"
	TagGPUModel = "gpu_model"
	TagGRPC     = "grpc"
)

// maxTagBytes mirrors serf's MetaMaxSize so SetTags fails with a clear error
// instead of serf's generic one.
const maxTagBytes = 512

// Tags is a member's published metadata.
type Tags struct {
	Role     Role
	RigID    string
	Version  string
	GPUCount int
	GPUModel string
	// GRPC is the state of the member's controller link, e.g. "ready",
	// "connecting", "down".
	GRPC string
	// Extra holds any other tags; keys must not collide with the ones above.
	Extra map[string]string
}

// Map returns the serf tag map; empty fields are omitted.
func (t Tags) Map() map[string]string {
	m := make(map[string]string, len(t.Extra)+6)
	maps.Copy(m, t.Extra)
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set(TagRole, string(t.Role))
	set(TagRigID, t.RigID)
	set(TagVersion, t.Version)
	if t.GPUCount != 0 {
		m[TagGPUCount] = strconv.Itoa(t.GPUCount)
	}
	set(TagGPUModel, t.GPUModel)
	set(TagGRPC, t.GRPC)
	return m
}

// ParseTags is the inverse of Tags.Map. Unknown keys go to Extra; a
// malformed gpu count (from a foreign serf agent, say) is kept in Extra
// rather than failing, since other members' tags are not ours to reject.
func ParseTags(m map[string]string) Tags {
	var t Tags
	for k, v := range m {
		switch k {
		case TagRole:
			t.Role = Role(v)
		case TagRigID:
			t.RigID = v
		case TagVersion:
			t.Version = v
		case TagGPUCount:
			n, err := strconv.Atoi(v)
			if err != nil {
				t.setExtra(k, v)
				continue
			}
			t.GPUCount = n
		case TagGPUModel:
			t.GPUModel = v
		case TagGRPC:
			t.GRPC = v
		case TagSig:
			// Checked by VerifyMember against RawTags; not metadata.
		default:
			t.setExtra(k, v)
		}
	}
	return t
}

func (t *Tags) setExtra(k, v string) {
	if t.Extra == nil {
		t.Extra = map[string]string{}
	}
	t.Extra[k] = v
}

func (t Tags) validate() error {
	switch t.Role {
	case "", RoleAgent, RoleController:
	default:
		return fmt.Errorf("role %q: want agent or controller", t.Role)
	}
	if t.GPUCount < 0 {
		return fmt.Errorf("gpu count %d is negative", t.GPUCount)
	}
	for k := range t.Extra {
		switch k {
		case TagRole, TagRigID, TagVersion, TagGPUCount, TagGPUModel, TagGRPC, TagSig, selectorNameKey:
			return fmt.Errorf("extra tag %q collides with a built-in key", k)
		case "":
			return fmt.Errorf("extra tag with empty key")
		}
	}
	size := 0
	for k, v := range t.Map() {
		// msgpack overhead is a few bytes per string; 4 is conservative.
		size += len(k) + len(v) + 4
	}
	if size > maxTagBytes {
		return fmt.Errorf("tags need about %d bytes, serf allows %d", size, maxTagBytes)
	}
	return nil
}
