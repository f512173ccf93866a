package miner

import (
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerapi"
)

// LaunchAdapter is the launching half of a minerapi.Adapter.
type LaunchAdapter interface {
	Launch(fs minerapi.FlightSheet) (minerapi.Launch, error)
}

// ForAdapter makes a Launcher from a miner adapter, e.g.
// ForAdapter(registry.New(sheet.Miner.Name, opts)).
func ForAdapter(a LaunchAdapter) Launcher { return adapterLauncher{a} }

type adapterLauncher struct{ a LaunchAdapter }

func (l adapterLauncher) Launch(fs *flightsheet.FlightSheet) (Launch, error) {
	ml, err := l.a.Launch(ToMinerAPI(fs))
	if err != nil {
		return Launch{}, err
	}
	return Launch{Args: ml.Args, ConfigName: ml.ConfigName, Config: ml.Config}, nil
}

// ToMinerAPI converts a flight sheet into the adapters' miner-neutral form.
// Pool users already carry ".worker", so no Worker is added.
func ToMinerAPI(fs *flightsheet.FlightSheet) minerapi.FlightSheet {
	out := minerapi.FlightSheet{
		Algorithm: fs.Algorithm,
		ExtraArgs: append([]string(nil), fs.ExtraArgs...),
		API:       minerapi.Endpoint{Host: fs.Miner.API.Host, Port: fs.Miner.API.Port, Token: fs.Miner.API.Token},
	}
	for _, p := range fs.Pools {
		out.Pools = append(out.Pools, minerapi.Pool{URL: p.URL, User: p.User, Password: p.Password})
	}
	return out
}
