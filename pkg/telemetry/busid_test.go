package telemetry

import "testing"

func TestNormalizeBusID(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "00000000:01:00.0", want: "0000:01:00.0"},
		{in: "0000:0A:00.0", want: "0000:0a:00.0"},
		{in: "01:00.1", want: "0000:01:00.1"},
		{in: "00000001:C1:00.0\x00\x00", want: "0001:c1:00.0"},
		{in: "", wantErr: true},
		{in: "0000:01:00", wantErr: true},
		{in: "zz:01:00.0", wantErr: true},
		{in: "0000:100:00.0", wantErr: true},
		{in: "0000:01:00.9", wantErr: true},
	}
	for _, tt := range tests {
		got, err := NormalizeBusID(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("NormalizeBusID(%q) = %q, %v; want %q, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzNormalizeBusID(f *testing.F) {
	f.Add("00000000:01:00.0")
	f.Add("01:00.1")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := NormalizeBusID(in)
		if err != nil {
			return
		}
		again, err := NormalizeBusID(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, got, again, err)
		}
	})
}
