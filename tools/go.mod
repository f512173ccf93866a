module github.com/quarryfleet/quarry/tools

go 1.26.0
