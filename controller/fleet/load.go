package fleet

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Loading the stored rigs is most of a large controller's start and most
// of its memory: a six-GPU rig decodes into about a hundred objects. Three
// things keep both down.
//
//   - Rigs are decoded on every CPU.
//   - Strings that many rigs repeat (GPU models, drivers, bus ids, miner
//     names, versions, pools) are taken out of the wire data before it is
//     decoded and set afterwards to one shared copy each, so they are
//     neither allocated per rig nor left behind as garbage. Ids, UUIDs,
//     names and hostnames are unique and decode as usual.
//   - The collector is paused while loading: everything decoded stays
//     live, so collections during the load would only trace a growing heap
//     again and again.

// loadChunk is how many stored rigs a decoder takes at a time: enough
// that handing them over costs little beside decoding them.
const loadChunk = 256

// maxShared bounds each decoder's table of shared strings, in case a field
// taken for one with few values turns out to have many.
const maxShared = 4096

type storedRig struct{ k, v []byte }

// loadRigs decodes every stored rig into f.rigs. The values are the read
// transaction's memory, so every decoder is done before it returns.
func (f *Fleet) loadRigs(tx *store.Tx) error {
	b := tx.Bucket([]byte(bucketRigs))
	n := b.Stats().KeyN
	if n == 0 {
		return nil
	}
	f.rigs = make(map[string]*quarryv1.Rig, n)
	defer pauseGC()()

	workers := min(runtime.GOMAXPROCS(0), (n+loadChunk-1)/loadChunk)
	chunks := make(chan []storedRig, workers)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		failed   = make(chan struct{})
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := newRigDecoder()
			rigs := make([]*quarryv1.Rig, 0, loadChunk)
			for chunk := range chunks {
				rigs = rigs[:0]
				for _, kv := range chunk {
					r, err := d.decode(kv.v)
					if err != nil {
						errOnce.Do(func() { firstErr = fmt.Errorf("rig %q: %w", kv.k, err); close(failed) })
						break
					}
					rigs = append(rigs, r)
				}
				f.mu.Lock()
				for i, r := range rigs {
					// The record holds its id, which is its key: sharing
					// it saves a copy per rig.
					id := r.Id
					if id != string(chunk[i].k) {
						id = string(chunk[i].k)
					}
					f.rigs[id] = r
				}
				f.mu.Unlock()
			}
		}()
	}
	chunk := make([]storedRig, 0, loadChunk)
	send := func() bool {
		select {
		case chunks <- chunk:
			chunk = make([]storedRig, 0, loadChunk)
			return true
		case <-failed:
			return false
		}
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if chunk = append(chunk, storedRig{k, v}); len(chunk) == loadChunk && !send() {
			break
		}
	}
	if len(chunk) > 0 {
		send()
	}
	close(chunks)
	wg.Wait()
	return firstErr
}

// gcPause is process-wide because the setting it guards is: the one
// piece of package state here, and only pauseGC touches it.
var gcPause struct {
	sync.Mutex
	n    int
	prev int
}

// pauseGC turns the collector off until the returned func is called. Loads
// may overlap (several fleets in one process), so the setting from before
// the first is restored after the last. A memory limit (GOMEMLIMIT) still
// holds while paused.
func pauseGC() (resume func()) {
	gcPause.Lock()
	if gcPause.n == 0 {
		gcPause.prev = debug.SetGCPercent(-1)
	}
	gcPause.n++
	gcPause.Unlock()
	return func() {
		gcPause.Lock()
		if gcPause.n--; gcPause.n == 0 {
			debug.SetGCPercent(gcPause.prev)
		}
		gcPause.Unlock()
	}
}

// A shape names the shared string fields of one message type and the
// repeated (or, for the host, singular) message fields under it that hold
// more. Each occurrence of the message in the wire data takes len(strs)
// slots of its shape's values, in wire order, which is the order of the
// decoded list.
type shape struct {
	id   int
	desc protoreflect.MessageDescriptor
	strs []protowire.Number
	kids []kidShape
}

type kidShape struct {
	num protowire.Number
	sh  *shape
}

// The shapes; the slot order of each is the order its names are given
// in, which rigDecoder.set relies on.
var (
	shapes         []*shape
	sensorShape    = newShape(&quarryv1.Sensor{}, "name")
	hostShape      = newShape(&quarryv1.HostStats{}, "cpu_power_source").kid("sensors", sensorShape)
	gpuShape       = newShape(&quarryv1.GPUStats{}, "vendor", "name", "bus_id", "applied_profile", "driver_version")
	minerGPUShape  = newShape(&quarryv1.MinerGPU{}, "bus_id")
	minerShape     = newShape(&quarryv1.MinerStats{}, "miner", "version", "algorithm", "coin", "pool", "state", "error").kid("gpus", minerGPUShape)
	eventShape     = newShape(&quarryv1.Event{}, "kind")
	installedShape = newShape(&quarryv1.InstalledMiner{}, "name", "version", "sha256")
	rigShape       = newShape(&quarryv1.Rig{}, "version", "gossip_status").
			kid("host", hostShape).kid("gpus", gpuShape).kid("miners", minerShape).
			kid("events", eventShape).kid("installed_miners", installedShape)
)

func newShape(m protoreflect.ProtoMessage, strs ...protoreflect.Name) *shape {
	md := m.ProtoReflect().Descriptor()
	sh := &shape{id: len(shapes)}
	for _, name := range strs {
		fd := md.Fields().ByName(name)
		if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated {
			panic(fmt.Sprintf("%s.%s is not a singular string field", md.FullName(), name))
		}
		sh.strs = append(sh.strs, fd.Number())
	}
	shapes = append(shapes, sh)
	sh.desc = md
	return sh
}

func (sh *shape) kid(name protoreflect.Name, k *shape) *shape {
	fd := sh.desc.Fields().ByName(name)
	if fd == nil || fd.Message() == nil || fd.Message().FullName() != k.desc.FullName() || fd.IsMap() {
		panic(fmt.Sprintf("%s.%s is not a %s field", sh.desc.FullName(), name, k.desc.FullName()))
	}
	sh.kids = append(sh.kids, kidShape{fd.Number(), k})
	return sh
}

// rigDecoder decodes stored rigs for one goroutine, reusing its buffers.
type rigDecoder struct {
	shared map[string]string
	buf    []byte
	vals   [][]string // by shape id
}

func newRigDecoder() *rigDecoder {
	return &rigDecoder{shared: make(map[string]string, 256), vals: make([][]string, len(shapes))}
}

// decode returns the rig stored as v, exactly as proto.Unmarshal would.
// Data that does not walk as expected is left to proto.Unmarshal whole,
// which also reports what is wrong with it.
func (d *rigDecoder) decode(v []byte) (*quarryv1.Rig, error) {
	for i := range d.vals {
		d.vals[i] = d.vals[i][:0]
	}
	var ok bool
	d.buf, ok = d.strip(d.buf[:0], v, rigShape)
	r := &quarryv1.Rig{}
	if ok && proto.Unmarshal(d.buf, r) == nil && d.set(r) {
		r.Online = false
		return r, nil
	}
	r = &quarryv1.Rig{}
	if err := proto.Unmarshal(v, r); err != nil {
		return nil, err
	}
	r.Online = false
	return r, nil
}

// strip appends src, a message of shape sh, to dst without its shared
// string fields, whose values it records.
func (d *rigDecoder) strip(dst, src []byte, sh *shape) ([]byte, bool) {
	base := len(d.vals[sh.id])
	for range sh.strs {
		d.vals[sh.id] = append(d.vals[sh.id], "")
	}
	// Fields kept as they are go to dst a run at a time.
	run, i := 0, 0
fields:
	for i < len(src) {
		num, typ, n := protowire.ConsumeTag(src[i:])
		if n < 0 {
			return dst, false
		}
		field := i
		i += n
		if typ != protowire.BytesType {
			var m int
			switch typ {
			case protowire.Fixed64Type:
				m = 8
			case protowire.Fixed32Type:
				m = 4
			default:
				m = protowire.ConsumeFieldValue(num, typ, src[i:])
			}
			if m < 0 || m > len(src)-i {
				return dst, false
			}
			i += m
			continue
		}
		b, m := protowire.ConsumeBytes(src[i:])
		if m < 0 {
			return dst, false
		}
		i += m
		end := i
		for slot, s := range sh.strs {
			if s != num {
				continue
			}
			if str, ok := d.share(b); ok {
				dst = append(dst, src[run:field]...)
				run = end
				d.vals[sh.id][base+slot] = str
			}
			continue fields
		}
		for _, k := range sh.kids {
			if k.num != num {
				continue
			}
			dst = append(dst, src[run:field]...)
			run = end
			dst = protowire.AppendTag(dst, num, protowire.BytesType)
			start := len(dst)
			var ok bool
			if dst, ok = d.strip(dst, b, k.sh); !ok {
				return dst, false
			}
			// The length goes before the stripped message, which is
			// only now known.
			var lb [binaryMaxVarint]byte
			l := protowire.AppendVarint(lb[:0], uint64(len(dst)-start))
			dst = append(dst, l...)
			copy(dst[start+len(l):], dst[start:len(dst)-len(l)])
			copy(dst[start:], l)
			continue fields
		}
	}
	return append(dst, src[run:]...), true
}

const binaryMaxVarint = 10

// share returns b as a string, the same one each time while the table has
// room; false if b is not UTF-8, which is left for the decoder to refuse.
// Only valid strings enter the table, so one found there is not checked
// again.
func (d *rigDecoder) share(b []byte) (string, bool) {
	if s, ok := d.shared[string(b)]; ok {
		return s, true
	}
	if !utf8.Valid(b) {
		return "", false
	}
	s := string(b)
	if len(d.shared) < maxShared {
		d.shared[s] = s
	}
	return s, true
}

// set puts the recorded strings into r, decoded from the stripped data;
// false if r does not hold the messages they were recorded from.
func (d *rigDecoder) set(r *quarryv1.Rig) bool {
	v := d.vals
	s := v[rigShape.id]
	r.Version, r.GossipStatus = s[0], s[1]

	hosts, sensors := v[hostShape.id], v[sensorShape.id]
	if r.Host == nil {
		if len(hosts) != 0 || len(sensors) != 0 {
			return false
		}
	} else {
		if len(hosts) != 1 || len(sensors) != len(r.Host.Sensors) {
			return false
		}
		r.Host.CpuPowerSource = hosts[0]
		for i, x := range r.Host.Sensors {
			x.Name = sensors[i]
		}
	}

	s = v[gpuShape.id]
	if len(s) != 5*len(r.Gpus) {
		return false
	}
	for i, g := range r.Gpus {
		g.Vendor, g.Name, g.BusId, g.AppliedProfile, g.DriverVersion = s[5*i], s[5*i+1], s[5*i+2], s[5*i+3], s[5*i+4]
	}

	s, mg := v[minerShape.id], v[minerGPUShape.id]
	if len(s) != 7*len(r.Miners) {
		return false
	}
	k := 0
	for i, m := range r.Miners {
		m.Miner, m.Version, m.Algorithm, m.Coin, m.Pool, m.State, m.Error = s[7*i], s[7*i+1], s[7*i+2], s[7*i+3], s[7*i+4], s[7*i+5], s[7*i+6]
		if k+len(m.Gpus) > len(mg) {
			return false
		}
		for _, g := range m.Gpus {
			g.BusId = mg[k]
			k++
		}
	}
	if k != len(mg) {
		return false
	}

	s = v[eventShape.id]
	if len(s) != len(r.Events) {
		return false
	}
	for i, e := range r.Events {
		e.Kind = s[i]
	}

	s = v[installedShape.id]
	if len(s) != 3*len(r.InstalledMiners) {
		return false
	}
	for i, m := range r.InstalledMiners {
		m.Name, m.Version, m.Sha256 = s[3*i], s[3*i+1], s[3*i+2]
	}
	return true
}
