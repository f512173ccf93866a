package watchdog_test

import (
	"context"
	"log/slog"

	"github.com/quarryfleet/quarry/agent/miner"
	"github.com/quarryfleet/quarry/agent/watchdog"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerapi"
)

// statsFor reads the running miner's API through its adapter.
type statsFor struct {
	adapter minerapi.Adapter
	ep      minerapi.Endpoint
}

func (s statsFor) Stats(ctx context.Context) (minerapi.Stats, error) {
	return s.adapter.Stats(ctx, s.ep)
}

// How the agent wires the supervisor and the watchdog together: supervisor
// events tell the watchdog when runs begin and end, miner log lines feed the
// login rule, and the watchdog drives the supervisor.
func Example() {
	ctx := context.Background()
	var sheet *flightsheet.FlightSheet // from the controller, validated
	adapter, _ := minerapi.Default().New(sheet.Miner.Name, minerapi.Options{})

	var wd *watchdog.Watchdog
	sup, _ := miner.New(ctx, miner.Config{
		DataDir:   "/var/lib/quarry",
		MinersDir: "/var/lib/quarry/miners",
		Launcher:  miner.ForAdapter(adapter),
		OnEvent: func(e miner.Event) {
			switch e.Kind {
			case miner.EventStarted:
				wd.MinerStarted(float64(sheet.ExpectedHashrate))
			case miner.EventStopped:
				wd.MinerStopped()
			}
			slog.Info(e.Message, "kind", e.Kind) // and forward to the controller
		},
		OnLogLine: func(line string) { wd.ObserveLogLine(line) },
	})
	ep := minerapi.Endpoint{Host: sheet.Miner.API.Host, Port: sheet.Miner.API.Port, Token: sheet.Miner.API.Token}
	wd, _ = watchdog.New(watchdog.DefaultConfig(), watchdog.Deps{
		Stats: statsFor{adapter, ep},
		Miner: sup,
		OnEvent: func(e watchdog.Event) {
			slog.Warn(e.Message, "kind", e.Kind) // and forward to the controller
		},
	})
	_ = sup.Start(ctx, sheet)
	go wd.Run(ctx)
}
