package web

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
)

// SheetForm is a flight sheet as the editor's fields hold it. The page
// reads a stored sheet's YAML through MinerService (which applies the
// caller's role and hides credentials from viewers) and has it turned
// into this form here, so the browser needs no YAML parser; it writes the
// YAML it saves itself.
type SheetForm struct {
	Name             string         `json:"name"`
	Coin             string         `json:"coin"`
	Algorithm        string         `json:"algorithm"`
	Miner            SheetFormMiner `json:"miner"`
	Pools            []SheetPool    `json:"pools"`
	ExtraArgs        []string       `json:"extra_args"`
	Overclock        string         `json:"overclock"`
	ExpectedHashrate string         `json:"expected_hashrate"`
}

// SheetFormMiner is the miner part of SheetForm.
type SheetFormMiner struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Path     string `json:"path"`
	SHA256   string `json:"sha256"`
	APIHost  string `json:"api_host"`
	APIPort  int    `json:"api_port"`
	APIToken string `json:"api_token"`
}

// SheetPool is one pool of SheetForm; Solo marks a coin daemon (solo
// mining) rather than a pool.
type SheetPool struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	Solo     bool   `json:"solo"`
}

// parseSheet answers POST /api/flightsheets/parse: {"yaml": "..."} in,
// the sheet's fields out. It reads nothing stored and changes nothing, so
// any signed-in user may use it; parse errors come back as 400 with the
// parser's message.
func (s *Server) parseSheet(w http.ResponseWriter, r *http.Request) {
	var in struct {
		YAML string `json:"yaml"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, flightsheet.MaxSize*2))
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "flight sheet larger than the 64 KiB allowed")
			return
		}
		writeError(w, http.StatusBadRequest, "want {\"yaml\": \"...\"}: "+err.Error())
		return
	}
	fs, err := flightsheet.Parse([]byte(in.YAML))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, sheetForm(fs))
}

func sheetForm(fs *flightsheet.FlightSheet) SheetForm {
	m := fs.Miner
	f := SheetForm{Name: fs.Name, Coin: fs.Coin, Algorithm: fs.Algorithm, Overclock: fs.Overclock,
		Miner: SheetFormMiner{Name: m.Name, Version: m.Version, Path: m.Path, SHA256: m.SHA256,
			APIHost: m.API.Host, APIPort: m.API.Port, APIToken: m.API.Token},
		Pools: []SheetPool{}, ExtraArgs: []string{}}
	for _, p := range fs.Pools {
		f.Pools = append(f.Pools, SheetPool{URL: p.URL, User: p.User, Password: p.Password, Solo: flightsheet.IsDaemonURL(p.URL)})
	}
	f.ExtraArgs = append(f.ExtraArgs, fs.ExtraArgs...)
	if fs.ExpectedHashrate > 0 {
		f.ExpectedHashrate = fs.ExpectedHashrate.String()
	}
	return f
}
