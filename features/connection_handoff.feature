Feature: Connection handoff
  When Redis Enterprise moves a database endpoint to another node, it sends
  MOVING to every connection of the old node with the new address and a grace
  period. A smart client opens a connection to the new address, swaps it in, and
  lets the requests already sent on the old one finish there, before the old
  node closes it.

  Background:
    Given a standalone database

  Scenario: CH1 traffic continues through a rebind under steady load
    Given a client "app" with 4 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database endpoint is rebound to another node
    Then every connection of "app" hands off exactly once
    And every connection of "app" was relaxed from its MOVING until its handoff
    And every connection of "app" now uses the endpoint MOVING named
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

  Scenario: CH2 a connection opened during the window goes to the new endpoint
    Given a client "app" with maintenance notifications enabled and endpoint type internal-ip
    And steady traffic from "app"
    When a rebind of the database endpoint starts
    And "app" receives MOVING
    And "app" opens a new connection
    Then the new connection of "app" uses the endpoint MOVING named
    And no connection is left on the node the endpoint moved away from before the grace ends
    When the rebind completes
    Then every connection of "app" now uses the endpoint MOVING named
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

  Scenario: CH3 a request in flight on the old connection completes there
    Given a client "app" with maintenance notifications enabled
    And a client "worker" with maintenance notifications enabled
    And steady traffic from "app"
    When "worker" sends a BLPOP that blocks for 1 s
    And the database endpoint is rebound to another node
    Then the request in flight completed without error after the handoff
    And every connection of "worker" hands off exactly once
    And every connection of "app" hands off exactly once
    And the traffic saw no errors
    And every acknowledged write is readable

  @emulator
  Scenario: CH4 exactly one handoff per connection, even when MOVING is repeated
    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database endpoint is rebound to another node with MOVING sent twice
    Then every connection of "app" hands off exactly once
    And "app" ignored every repeated MOVING
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

  Scenario: CH5 MOVING without an address: reconnect to the configured address at half the grace
    Given a client "app" with maintenance notifications enabled and endpoint type none
    And steady traffic from "app"
    When the database endpoint is rebound to another node
    Then "app" receives MOVING with no address
    And "app" reconnects to its configured address half the grace period after MOVING
    And every connection of "app" hands off exactly once
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

  @emulator
  Scenario: CH6 a handoff target that never answers: retried, given up, and the client keeps serving
    Given a client "app" with maintenance notifications enabled and these settings:
      | handoff timeout     | 300 ms |
      | max handoff retries | 2      |
    And steady traffic from "app"
    When the emulator sends MOVING to an address that accepts connections but never answers
    Then "app" gives up the handoff after 3 attempts
    When "app" opens a new connection
    Then "app" can still write and read
    And the traffic saw no errors
    And every acknowledged write is readable

  Scenario: CH7 a handoff over TLS keeps verifying the server
    Given the database uses TLS with certificates from the cluster's CA
    And a client "app" with 2 connections and maintenance notifications enabled and endpoint type auto
    And steady traffic from "app"
    Then "app" asked for the endpoint type its TLS setting and address class call for, by this table:
      | TLS | address class | endpoint type |
      | off | internal      | internal-ip   |
      | off | external      | external-ip   |
      | on  | internal      | internal-fqdn |
      | on  | external      | external-fqdn |
    When the database endpoint is rebound to another node
    Then "app" receives MOVING with a host name
    And every connection of "app" hands off exactly once
    And every connection of "app" now uses the endpoint MOVING named
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

  @emulator
  Scenario: CH9 a handoff target whose certificate the client does not trust is refused
    Given the database uses TLS with certificates from the cluster's CA
    And a client "app" with maintenance notifications enabled and these settings:
      | handoff timeout     | 1 s |
      | max handoff retries | 1   |
    And steady traffic from "app"
    When the emulator sends MOVING to a TLS address whose certificate comes from another CA
    Then "app" gives up the handoff after 2 attempts
    And every failed handoff attempt of "app" names the server's certificate
    And "app" can still write and read
    And the traffic saw no errors
    And every acknowledged write is readable

  Scenario: CH8 an idle connection moves as soon as MOVING arrives, not at its next command
    Given a client "app" with 2 connections and maintenance notifications enabled
    When the database endpoint is rebound to another node
    Then every connection of "app" hands off exactly once
    And every connection of "app" handed off promptly after its MOVING
    And every connection of "app" now uses the endpoint MOVING named
    And "app" can still write and read
    And the timeouts of "app" are back to their configured values

  Scenario: CH10 negative control: a client that does not hand off loses its connections when the old endpoint closes
    Given a client "app" with 2 connections and maintenance notifications enabled and these settings:
      | handoffs | off |
    And steady traffic from "app"
    When the database endpoint is rebound to another node
    Then "app" receives MOVING
    And the server closed every connection of "app" when the grace ended
    And the claim fails that the traffic saw no errors, saying "connection error"
    And every acknowledged write is readable

  Scenario: CH11 negative control: a client with maintenance notifications disabled never hands off, and the server's record says so
    Given a client "app" with 4 connections and maintenance notifications disabled
    And steady traffic from "app"
    When the database endpoint is rebound to another node
    Then the server closed every connection of "app" when the grace ended
    And the claim fails that every connection of "app" hands off exactly once, saying "they never moved"
    And the claim fails that every connection of "app" now uses the endpoint MOVING named, saying "sent no MOVING"
    And the claim fails that the traffic saw no errors, saying "connection error"
    And every acknowledged write is readable
