package relay

// ParseRange exports parseRange to the tests.
var ParseRange = parseRange
