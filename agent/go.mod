module github.com/fustor/fustor/agent

go 1.26.0
