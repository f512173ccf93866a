package fleet

import (
	"fmt"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// fillAll sets every field of m and of every message under it, lists and
// maps with two entries, to values that differ between fields and
// elements; variant changes them, so that rigs given the same variant
// repeat each other's strings.
func fillAll(t *testing.T, m protoreflect.Message, variant int, path string) {
	t.Helper()
	scalar := func(fd protoreflect.FieldDescriptor, elem int) protoreflect.Value {
		tag := fmt.Sprintf("%s.%s#%d.%d", path, fd.Name(), variant, elem)
		n := len(tag) + 100*variant + elem
		switch fd.Kind() {
		case protoreflect.StringKind:
			return protoreflect.ValueOfString(tag)
		case protoreflect.BytesKind:
			return protoreflect.ValueOfBytes([]byte(tag))
		case protoreflect.BoolKind:
			return protoreflect.ValueOfBool(true)
		case protoreflect.EnumKind:
			vals := fd.Enum().Values()
			return protoreflect.ValueOfEnum(vals.Get(vals.Len() - 1).Number())
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			return protoreflect.ValueOfInt32(int32(n))
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			return protoreflect.ValueOfInt64(int64(n))
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			return protoreflect.ValueOfUint32(uint32(n))
		case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			return protoreflect.ValueOfUint64(uint64(n))
		case protoreflect.FloatKind:
			return protoreflect.ValueOfFloat32(float32(n) + 0.5)
		case protoreflect.DoubleKind:
			return protoreflect.ValueOfFloat64(float64(n) + 0.25)
		}
		t.Fatalf("%s.%s: kind %s not covered by this test", path, fd.Name(), fd.Kind())
		return protoreflect.Value{}
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for e := range 2 {
				k := scalar(fd.MapKey(), e).MapKey()
				if fd.MapValue().Message() != nil {
					v := mp.NewValue()
					fillAll(t, v.Message(), variant, p)
					mp.Set(k, v)
				} else {
					mp.Set(k, scalar(fd.MapValue(), e))
				}
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for e := range 2 {
				if fd.Message() != nil {
					v := l.NewElement()
					fillAll(t, v.Message(), variant, fmt.Sprintf("%s[%d]", p, e))
					l.Append(v)
				} else {
					l.Append(scalar(fd, e))
				}
			}
		case fd.Message() != nil:
			fillAll(t, m.Mutable(fd).Message(), variant, p)
		default:
			m.Set(fd, scalar(fd, 0))
		}
	}
}

// storeRaw writes rig records as they are, as an older or other writer
// may have left them.
func storeRaw(t *testing.T, path string, recs map[string][]byte) {
	t.Helper()
	bdb, err := store.Open(path, Buckets...)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := store.NewDB(bdb).Update(func(tx *store.Tx) error {
		for k, v := range recs {
			if err := tx.Bucket([]byte(bucketRigs)).Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Every field of a stored rig, its GPUs', miners' and everything under
// them, comes back from Open as proto.Unmarshal decodes it, for enough
// rigs that several decoders share the load.
func TestOpenLoadsEveryField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	const n = 3*loadChunk + 7
	recs := map[string][]byte{}
	want := map[string]*quarryv1.Rig{}
	for i := range n {
		r := &quarryv1.Rig{}
		fillAll(t, r.ProtoReflect(), i%3, "rig")
		r.Id = fmt.Sprintf("rig-%04d", i)
		r.Online = true // not so once loaded: no rig is connected yet
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		recs[r.Id] = b
		r.Online = false
		want[r.Id] = r
	}
	storeRaw(t, path, recs)
	f, db := openFleet(t, path, Options{})
	defer db.Close()
	defer f.Close()
	if len(f.rigs) != n {
		t.Fatalf("loaded %d rigs, want %d", len(f.rigs), n)
	}
	for id, w := range want {
		if got := f.rigs[id]; !proto.Equal(got, w) {
			t.Fatalf("rig %s loaded as\n%v\nwant\n%v", id, got, w)
		}
	}
	// Shared strings are shared between records, never fields of one.
	a, b := f.rigs["rig-0000"], f.rigs["rig-0003"]
	if unsafe.StringData(a.Gpus[1].Name) != unsafe.StringData(b.Gpus[1].Name) || a.Gpus[1].Name == a.Gpus[1].Vendor {
		t.Fatalf("GPU names %q, %q, vendor %q", a.Gpus[1].Name, b.Gpus[1].Name, a.Gpus[1].Vendor)
	}
	if !strings.Contains(a.Miners[1].Gpus[0].BusId, "miners[1].gpus[0].bus_id") {
		t.Fatalf("miner GPU bus id %q", a.Miners[1].Gpus[0].BusId)
	}
}

// Records encoded other than proto.Marshal encodes them still load as
// proto.Unmarshal decodes them: fields repeated or interleaved, the host
// in two parts, unknown fields.
func TestOpenLoadsMergedRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	part := func(r *quarryv1.Rig) []byte {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	gpu := func(v string) *quarryv1.GPUStats {
		return &quarryv1.GPUStats{Vendor: v, Name: "RTX", BusId: "00:01." + v, Uuid: "GPU-" + v}
	}
	miner := &quarryv1.MinerStats{Miner: "t-rex", Pool: "stratum+tcp://p:1", Gpus: []*quarryv1.MinerGPU{{BusId: "00:01.a"}, {BusId: "00:01.b"}}}
	unknown := protowire.AppendString(protowire.AppendTag(nil, 999, protowire.BytesType), "kept")
	gpuWithUnknown, err := proto.Marshal(gpu("u"))
	if err != nil {
		t.Fatal(err)
	}
	gpuWithUnknown = append(gpuWithUnknown, unknown...)
	var rec []byte
	rec = append(rec, part(&quarryv1.Rig{Id: "r1", Version: "1.0", Gpus: []*quarryv1.GPUStats{gpu("a")}})...)
	rec = append(rec, part(&quarryv1.Rig{Miners: []*quarryv1.MinerStats{miner}, Host: &quarryv1.HostStats{CpuPowerSource: "rapl", Sensors: []*quarryv1.Sensor{{Name: "cpu"}}}})...)
	rec = append(rec, part(&quarryv1.Rig{Gpus: []*quarryv1.GPUStats{gpu("b")}, Version: "2.0"})...)
	rec = protowire.AppendBytes(protowire.AppendTag(rec, 8, protowire.BytesType), gpuWithUnknown)
	rec = append(rec, unknown...)
	// A GPU's vendor given twice: the last one counts.
	rec = protowire.AppendBytes(protowire.AppendTag(rec, 8, protowire.BytesType),
		append(part2(t, gpu("c")), protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "d")...))
	canonical := part(&quarryv1.Rig{Id: "r2", Gpus: []*quarryv1.GPUStats{gpu("a")}, Miners: []*quarryv1.MinerStats{miner}})
	// The host in two parts merges into one, which the shared strings,
	// kept per part, do not follow: such a record is decoded whole.
	split := append(part(&quarryv1.Rig{Id: "r3", Host: &quarryv1.HostStats{CpuPowerSource: "rapl"}, Gpus: []*quarryv1.GPUStats{gpu("a")}}),
		part(&quarryv1.Rig{Host: &quarryv1.HostStats{Sensors: []*quarryv1.Sensor{{Name: "cpu"}}}})...)
	all := map[string][]byte{"r1": rec, "r2": canonical, "r3": split}
	storeRaw(t, path, all)

	for id, b := range all {
		d := newRigDecoder()
		buf, ok := d.strip(nil, b, rigShape)
		r := &quarryv1.Rig{}
		if whole := !ok || proto.Unmarshal(buf, r) != nil || !d.set(r); whole != (id == "r3") {
			t.Fatalf("rig %s decoded whole: %v", id, whole)
		}
	}
	f, db := openFleet(t, path, Options{})
	defer db.Close()
	defer f.Close()
	for id, b := range all {
		want := &quarryv1.Rig{}
		if err := proto.Unmarshal(b, want); err != nil {
			t.Fatal(err)
		}
		if got := f.rigs[id]; !proto.Equal(got, want) {
			t.Fatalf("rig %s loaded as\n%v\nwant\n%v", id, got, want)
		}
	}
	if got := f.rigs["r1"]; len(got.Gpus) != 4 || got.Gpus[3].Vendor != "d" || got.Version != "2.0" || len(got.Gpus[2].ProtoReflect().GetUnknown()) == 0 {
		t.Fatalf("merged rig: %v", got)
	}
}

func part2(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A record that does not decode fails Open with the decoder's own error,
// and the collector is left as it was found.
func TestOpenRefusesBadRecord(t *testing.T) {
	gpu := protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "nv\xffidia")
	good, err := proto.Marshal(&quarryv1.Rig{Id: "ok", Gpus: []*quarryv1.GPUStats{{Vendor: "nvidia", PowerW: proto.Float64(120)}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string][]byte{
		"not UTF-8": protowire.AppendBytes(protowire.AppendTag(nil, 8, protowire.BytesType), gpu),
		"truncated": good[:len(good)-3],
	} {
		t.Run(name, func(t *testing.T) { testOpenRefuses(t, rec, good) })
	}
}

func testOpenRefuses(t *testing.T, rec, good []byte) {
	path := filepath.Join(t.TempDir(), "q.db")
	recs := map[string][]byte{"bad": rec}
	for i := range 2 * loadChunk {
		recs[fmt.Sprintf("ok-%d", i)] = good
	}
	storeRaw(t, path, recs)
	wantErr := proto.Unmarshal(rec, &quarryv1.Rig{})
	if wantErr == nil {
		t.Fatal("the bad record decodes")
	}
	prev := debug.SetGCPercent(77)
	defer debug.SetGCPercent(prev)
	bdb, err := store.Open(path, Buckets...)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	_, err = Open(store.NewDB(bdb), Options{})
	if err == nil || !strings.Contains(err.Error(), `rig "bad"`) || !strings.Contains(err.Error(), wantErr.Error()) {
		t.Fatalf("Open: %v, want the error of rig \"bad\": %v", err, wantErr)
	}
	if got := debug.SetGCPercent(77); got != 77 {
		t.Fatalf("GC percent after Open: %d, want 77", got)
	}
}
