Feature: Push notifications
  Redis Enterprise announces maintenance to every client connection that asked
  for it, with RESP3 push notifications. A smart client relaxes its timeouts while
  a maintenance window is open and restores them when the window closes, so that
  the traffic it carries sees no error at all.

  Background:
    Given a standalone database

  Scenario: PN1 a failover is announced, then completed with the next sequence number
    Given a client "app" with maintenance notifications enabled
    And steady traffic from "app"
    When the database fails over
    Then "app" receives FAILING_OVER then FAILED_OVER with consecutive sequence numbers on the same connection
    And "app" was relaxed between FAILING_OVER and FAILED_OVER
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

  Scenario: PN2 a migration is announced, completed, and the data moves with the shard
    Given a client "app" with maintenance notifications enabled
    And steady traffic from "app"
    When the database's shard migrates to another node
    Then "app" receives MIGRATING then MIGRATED with consecutive sequence numbers on the same connection
    And "app" was relaxed between MIGRATING and MIGRATED
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

  Scenario Outline: PN3 a rebind sends MOVING in the address form the connection asked for
    Given a client "app" with maintenance notifications enabled and endpoint type <type>
    And an idle raw connection that opted in for endpoint type <type>
    And steady traffic from "app"
    When the database endpoint is rebound to another node
    Then "app" receives MOVING with <form>
    And every connection of "app" hands off exactly once
    And every connection of "app" now uses the endpoint MOVING named
    And the raw connection is closed by the server when the grace period of its MOVING ends
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

    Examples:
      | type          | form          |
      | internal-ip   | an IP address |
      | external-ip   | an IP address |
      | internal-fqdn | a host name   |
      | external-fqdn | a host name   |

  Scenario: PN4 each notification arrives once per connection per event
    Given a client "app" with 3 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database fails over
    And the database's shard migrates to another node
    And the database endpoint is rebound to another node
    Then every connection of "app" hands off exactly once
    And every connection of "app" received exactly:
      | FAILING_OVER | 1 |
      | FAILED_OVER  | 1 |
      | MIGRATING    | 1 |
      | MIGRATED     | 1 |
      | MOVING       | 1 |
      | SMIGRATING   | 0 |
      | SMIGRATED    | 0 |
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

  Scenario: PN5 with notifications disabled nothing arrives, and requests the failover holds time out
    Given a client "app" with maintenance notifications disabled
    And steady traffic from "app"
    When the database fails over
    Then "app" received no notification
    And the traffic saw timeouts during the maintenance, and no other error
    And every acknowledged write is readable

  Scenario: PN8 with notifications disabled, only a timeout longer than the switch-over gets through
    Given a client "app" with maintenance notifications disabled and these settings:
      | response timeout | 5 s |
    And steady traffic from "app"
    When the database fails over
    Then "app" received no notification
    And the traffic saw no errors
    And every acknowledged write is readable

  Scenario: PN6 a connection that never opted in receives no push
    Given a client "legacy" using RESP2 with maintenance notifications auto
    And a raw RESP2 connection
    And steady traffic from "legacy"
    When the database fails over
    And the database's shard migrates to another node
    Then "legacy" received no notification
    And the raw RESP2 connection received no push and still answers PING
    And the traffic saw timeouts during the maintenance, and no other error
    And every acknowledged write is readable
    And the timeouts of "legacy" are back to their configured values

  Scenario: PN7 a database of two shards behind one endpoint fails over and migrates without an error
    Given a database of 2 shards behind one endpoint
    And a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database fails over
    Then "app" receives FAILING_OVER then FAILED_OVER with consecutive sequence numbers on the same connection
    When the database's shard migrates to another node
    Then "app" receives MIGRATING then MIGRATED with consecutive sequence numbers on the same connection
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values
