package overclock

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/ocprofile"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func i32(v int32) *int32               { return &v }
func f64(v float64) *float64           { return &v }
func u32(v uint32) *uint32             { return &v }
func model(m string) *quarryv1.OCMatch { return &quarryv1.OCMatch{Model: m} }

// rtx3070 is a card as an agent reports it: 100..220 W, clocks up to
// 2100 and 7001 MHz, one fan.
func rtx3070(index uint32) *quarryv1.GPUStats {
	return &quarryv1.GPUStats{Index: index, Name: "NVIDIA GeForce RTX 3070", Uuid: "GPU-" + string(rune('a'+index)), BusId: "0000:0" + string(rune('1'+index)) + ":00.0",
		PowerLimitMinW: f64(100), PowerLimitMaxW: f64(220), SmClockMaxMhz: u32(2100), MemoryClockMaxMhz: u32(7001), FanPercent: []float64{50}}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tt := range []struct {
		name string
		p    *quarryv1.OverclockProfile
		want string // "" means valid
	}{
		{"valid", &quarryv1.OverclockProfile{Name: "eco", Match: model("NVIDIA GeForce RTX 3070"), PowerLimitW: i32(130)}, ""},
		{"no name", &quarryv1.OverclockProfile{Match: model("x"), PowerLimitW: i32(130)}, "name: is required"},
		{"bad name", &quarryv1.OverclockProfile{Name: "a b/c", Match: model("x"), PowerLimitW: i32(130)}, "name: "},
		{"long name", &quarryv1.OverclockProfile{Name: strings.Repeat("a", 65), Match: model("x"), PowerLimitW: i32(130)}, "name: "},
		{"no match", &quarryv1.OverclockProfile{Name: "eco", PowerLimitW: i32(130)}, "match: pick the cards"},
		{"negative index", &quarryv1.OverclockProfile{Name: "eco", Match: &quarryv1.OCMatch{Index: []int32{-1}}, PowerLimitW: i32(130)}, "match.index: "},
		{"bad bus id", &quarryv1.OverclockProfile{Name: "eco", Match: &quarryv1.OCMatch{BusId: []string{"nonsense"}}, PowerLimitW: i32(130)}, "match.bus_id: "},
		{"zero power", &quarryv1.OverclockProfile{Name: "eco", Match: model("x"), PowerLimitW: i32(0)}, "power_limit_w: 0 W: must be positive"},
		{"inverted clocks", &quarryv1.OverclockProfile{Name: "eco", Match: model("x"), GpuClockMhz: &quarryv1.OCRange{Min: 1500, Max: 1000}}, "gpu_clock_mhz: 1500..1000 MHz"},
		{"fan over 100", &quarryv1.OverclockProfile{Name: "eco", Match: model("x"), FanPercent: i32(101)}, "fan_percent: 101%"},
		{"sets nothing", &quarryv1.OverclockProfile{Name: "eco", Match: model("x")}, "settings: the profile sets nothing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.p)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "\n"+tt.want)):
				t.Fatalf("got %v, want a line starting %q", err, tt.want)
			}
		})
	}
}

func TestPlanChecksEveryCardAgainstItsReportedLimits(t *testing.T) {
	gpus := []*quarryv1.GPUStats{rtx3070(0), rtx3070(1), {Index: 2, Name: "NVIDIA GeForce GTX 1060", PowerLimitMinW: f64(60), PowerLimitMaxW: f64(140)}, {Index: 3, Lost: true, Name: "gone"}}
	file := func(ps ...*quarryv1.OverclockProfile) *ocprofile.File {
		f := &ocprofile.File{}
		for _, p := range ps {
			f.Profiles = append(f.Profiles, Profile(p))
		}
		return f
	}
	eco := &quarryv1.OverclockProfile{Name: "eco", Match: model("NVIDIA GeForce RTX 3070"), PowerLimitW: i32(130), MemClockMhz: &quarryv1.OCRange{Min: 5000, Max: 7000}, FanPercent: i32(60)}
	for _, tt := range []struct {
		name  string
		f     *ocprofile.File
		cards string // index:profile, for a file that fits
		want  []string
	}{
		{"fits", file(eco), "0:eco 1:eco 2:", nil},
		{"power above max", file(&quarryv1.OverclockProfile{Name: "hot", Match: model("NVIDIA GeForce RTX 3070"), PowerLimitW: i32(300)}), "",
			[]string{"power_limit_w: profile hot on GPU 0 (NVIDIA GeForce RTX 3070): 300 W is outside the allowed 100..220 W", "GPU 1"}},
		{"power below min", file(&quarryv1.OverclockProfile{Name: "cold", Match: &quarryv1.OCMatch{Index: []int32{0}}, PowerLimitW: i32(99)}), "", []string{"99 W is outside the allowed 100..220 W"}},
		{"clock above max", file(&quarryv1.OverclockProfile{Name: "fast", Match: &quarryv1.OCMatch{Index: []int32{1}}, GpuClockMhz: &quarryv1.OCRange{Min: 300, Max: 2200}}), "",
			[]string{"gpu_clock_mhz: profile fast on GPU 1 (NVIDIA GeForce RTX 3070): 2200 MHz is above the card's maximum 2100 MHz"}},
		{"no clock limit reported", file(&quarryv1.OverclockProfile{Name: "old", Match: &quarryv1.OCMatch{Index: []int32{2}}, MemClockMhz: &quarryv1.OCRange{Min: 300, Max: 400}}), "", []string{"mem_clock_mhz: profile old on GPU 2", "reports no clock limit"}},
		{"no fan", file(&quarryv1.OverclockProfile{Name: "fan", Match: &quarryv1.OCMatch{Index: []int32{2}}, FanPercent: i32(50)}), "", []string{"fan_percent: ", "reports no fan"}},
		{"equal matches", file(&quarryv1.OverclockProfile{Name: "a", Match: &quarryv1.OCMatch{Index: []int32{0}}, FanPercent: i32(50)}, &quarryv1.OverclockProfile{Name: "b", Match: &quarryv1.OCMatch{Index: []int32{0}}, FanPercent: i32(40)}), "", []string{"match: ", "equally"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cards, err := Plan(tt.f, gpus)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, c := range cards {
					got = append(got, strings.TrimSpace(string(rune('0'+c.Index))+":"+c.Profile))
				}
				if strings.Join(got, " ") != tt.cards {
					t.Fatalf("cards %q, want %q", strings.Join(got, " "), tt.cards)
				}
				return
			}
			if !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("got %v, want out of range", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	if _, err := Plan(file(eco), []*quarryv1.GPUStats{{Index: 0, Lost: true}}); !errors.Is(err, ErrNoCards) {
		t.Errorf("a rig with no live card: %v, want ErrNoCards", err)
	}
}

func TestStoreKeepsProfilesInTheDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quarry.db")
	db := testsupport.OpenStore(t, path)
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	eco := &quarryv1.OverclockProfile{Name: "eco", Match: &quarryv1.OCMatch{Model: "NVIDIA GeForce RTX 3070", BusId: []string{"01:00.0"}}, PowerLimitW: i32(130)}
	rec, err := s.Put(eco, "ops", 42)
	if err != nil {
		t.Fatal(err)
	}
	if rec.UpdatedBy != "ops" || rec.UpdatedUnixNano != 42 {
		t.Errorf("stamp: %v", rec)
	}
	if _, err := s.Put(&quarryv1.OverclockProfile{Name: "bad", Match: model("x"), FanPercent: i32(200)}, "ops", 43); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid profile stored: %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Name != "eco" {
		t.Fatalf("list: %v %v", list, err)
	}
	// What is sent is a profile file the agent's parser accepts.
	f, payload, err := s.File([]string{"eco", "eco"})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ocprofile.Parse(bytes.NewReader(payload))
	if err != nil {
		t.Fatalf("the rig would refuse %q: %v", payload, err)
	}
	if len(parsed.Profiles) != 1 || *parsed.Profiles[0].PowerLimitW != 130 || parsed.Profiles[0].Match.BusID[0] != "0000:01:00.0" || len(f.Profiles) != 1 {
		t.Errorf("sent %q", payload)
	}
	if _, _, err := s.File([]string{"missing"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown profile: %v", err)
	}
	if _, _, err := s.File(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("no profile: %v", err)
	}
	if err := s.Delete("eco"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("eco"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	testsupport.CheckDB(t, db.Bolt())
}
