package server

// component is one part of the controller with an explicit lifecycle.
// New opens the components in the order components lists them, Serve
// starts them in that order, and they stop in reverse: at shutdown, or as
// far as they got when New fails. Any step may be nil. An open that fails
// undoes its own partial work: only components fully open are stopped.
type component struct {
	name  string
	open  func() error
	start func()
	stop  func()
}

// components is the controller's start-up order, stated once: each entry
// says what it needs before it.
func (c *Controller) components() []component {
	return []component{
		{name: "database", open: c.openDatabase, stop: c.closeDatabase},
		// The fleet stops committing reports at "report ingest"; stopping
		// it here again covers a start that failed before that point.
		{name: "fleet", open: c.openFleet, stop: func() { c.fleet.Close() }},
		// The CA writes the local credentials and issues the server
		// certificate the gRPC server needs.
		{name: "CA", open: c.openCA},
		// Listeners and the gRPC server with its interceptors, before any
		// service registers.
		{name: "gRPC server", open: c.openGRPC, stop: c.closeUnserved},
		// The HTTP mux, before billing mounts its webhook and the web
		// component its pages.
		{name: "HTTP mux", open: c.openMux},
		{name: "jobs", open: c.setupJobs, stop: c.closeJobs},
		// Learned figures observe reports before anything reads them.
		{name: "figures", open: c.openFigures, stop: c.closeFigures},
		// The catalogue before miners, which resolves sheets naming its
		// versions.
		{name: "catalogue", open: c.setupCatalogue},
		{name: "miners", open: c.setupMiners, stop: c.closeMiners},
		{name: "billing", open: c.openBilling, start: func() { c.billing.Start() }, stop: func() { c.billing.Stop() }},
		// After figures and billing: the switcher ranks with the learned
		// figures and applies the past-due hold.
		{name: "profit", open: c.setupProfit, start: c.startProfit, stop: c.stopProfit},
		// After figures, billing and profit, whose hashrate expectations,
		// past-due customers and market health its rules read; before
		// the web, which shows its alerts.
		{name: "notify", open: c.openNotify, start: c.startNotify, stop: c.stopNotify},
		// After every report observer (miners, billing, profit): when
		// the fleet stops, it commits its last reports while they still
		// observe them.
		{name: "report ingest", stop: func() { c.fleet.Close() }},
		// Gossip before AgentService, which hands rigs its keyring,
		// address and event key; it stops before the fleet's database
		// goes, as its status writes end.
		{name: "gossip", open: c.openGossip, start: func() { c.gossip.Start() }, stop: func() { c.gossip.Stop() }},
		{name: "agent and fleet services", open: c.openFleetServices},
		{name: "operator service", open: c.openOperator},
		// After profit and billing: the dashboard and the metrics show
		// their figures.
		{name: "web", open: c.openWeb},
		// Last: serve once everything is in place; stop serving first.
		{name: "serving", open: c.openServing, start: c.startServing, stop: c.stopServing},
	}
}

// open opens the components in order and stops at the first that fails.
func (c *Controller) open() error { return c.openParts(c.components()) }

func (c *Controller) openParts(parts []component) error {
	c.parts = parts
	for _, p := range c.parts {
		if p.open != nil {
			if err := p.open(); err != nil {
				return err // each says which setting or file failed
			}
		}
		c.opened++
	}
	return nil
}

// start starts the components in order.
func (c *Controller) start() {
	for _, p := range c.parts[:c.opened] {
		if p.start != nil {
			p.start()
		}
	}
}

// openWeb mounts the metrics and the dashboard and connects billing's
// views to them.
func (c *Controller) openWeb() error {
	if err := c.setupWeb(); err != nil {
		return err
	}
	c.wireBillingViews()
	return nil
}

// stop stops every opened component in reverse order, once.
func (c *Controller) stop() {
	for c.opened > 0 {
		c.opened--
		if p := c.parts[c.opened]; p.stop != nil {
			p.stop()
		}
	}
}
