module github.com/fustor/fustor/fusion

go 1.26.0
