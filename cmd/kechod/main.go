// Command kechod loads, health-checks and reports on the kecho kernel module.
package main

func main() {}
