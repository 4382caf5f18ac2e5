Feature: Faults and odd pushes
  Not every fault is announced, and not everything that reaches a client is a
  well-formed notification it was told to expect. A fault nobody announced
  may cost the requests it caught in flight, no more, and never an
  acknowledged write. A push it cannot read, or one that is not about maintenance
  at all, must be put aside without losing track of which reply belongs to
  which request: the client stays in step, and its traffic never sees another
  request's answer.

  Background:
    Given a standalone database

  @emulator
  Scenario: FA1 a proxy restart drops every connection without notice: the client reconnects, only requests caught by the close fail, and no acknowledged write is lost
    The steady traffic of a client of 2 connections is four streams of
    requests (two loops of writes and reads, and a request held by the
    server on each connection, one after another). Per stream, the request
    in flight when the connections close fails, and so may one sent in the
    moment before the client notices: at most two each, eight in all.

    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database's proxy restarts
    Then every connection of "app" was dropped and connected again
    And the traffic saw at most 8 connection errors, and recovered
    And every acknowledged write is readable

  @emulator
  Scenario: FA2 a shard process dies: its replica takes over, the requests caught by the crash fail or time out, and traffic resumes
    Three per stream of requests (see FA1): the one the crash catches, one
    sent before the client notices, one that waits out the promotion.

    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When a primary shard of the database dies
    Then the traffic saw at most 12 connection or timeout errors, and recovered
    And at most 2 acknowledged writes were lost

  @emulator
  Scenario: FA3 a network failure longer than the timeout: the requests it holds time out, the late replies are never taken for others, and traffic resumes
    Two per stream of requests (see FA1): the one the failure holds past the
    timeout, and the next one it catches.

    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database is cut off from its clients for 1.5 s
    Then the traffic saw at most 8 timeout errors, and recovered
    And every acknowledged write is readable

  @emulator
  Scenario: FA4 an endpoint that moves without MOVING: the old node closes the connections when the grace ends, the client reconnects, only requests caught by the close fail
    As in FA1, at most two requests per stream: the one in flight and one
    sent before the client notices the close.

    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database endpoint is rebound to another node without MOVING
    Then "app" received no MOVING
    And every connection of "app" was dropped and connected again
    And the traffic saw at most 8 connection errors, and recovered
    And every acknowledged write is readable

  @emulator
  Scenario Outline: FA5 a malformed <kind> push is dropped and the connection stays in step
    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the emulator sends the push <push> to every connection
    Then every connection of "app" dropped a malformed <kind>
    And the traffic saw no errors
    And every acknowledged write is readable

    Examples:
      | kind         | push                                |
      | MOVING       | ["MOVING", "soon", 15, null]        |
      | MOVING       | ["MOVING", 7, 15, "no-port-here"]   |
      | FAILING_OVER | ["FAILING_OVER"]                    |
      | MIGRATED     | ["MIGRATED", [1, 2], "1"]           |

  @emulator
  Scenario: FA6 a pub/sub message on a connection that is not subscribed is left alone, never taken for a reply
    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the emulator sends the push ["message", "news", "hello"] to every connection
    Then every connection of "app" left the message push alone
    And the traffic saw no errors
    And every acknowledged write is readable

  Scenario Outline: FA7 a client blocked without a timeout does not hold back <maintenance>: the blocked call ends with the error a role change gives
    A real shard that changes role answers every client blocked on it with
    `-UNBLOCKED force unblock from blocking operation, instance state changed
    (master -> replica?)`; the connection stays usable, and the maintenance
    goes ahead on time.

    Given a client "worker" with maintenance notifications enabled
    And a client "app" with maintenance notifications enabled
    And steady traffic from "app"
    When "worker" sends a BLPOP that blocks without a timeout
    And <maintenance step>
    Then the request in flight of "worker" failed with an error that says "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)"
    And the traffic saw no errors
    And every acknowledged write is readable

    Examples:
      | maintenance | maintenance step                                |
      | a failover  | the database fails over                         |
      | a migration | the database's shard migrates to another node   |

  @emulator
  Scenario: FA8 the node that holds the endpoint and the primary reboots: the replica takes over, the endpoint moves without MOVING, and only requests made while the node was down fail
    Nobody announces a node's failure. Every connection to the node drops,
    and new ones are refused until the endpoint has moved to a node that is
    up. The replica was in sync when the node went down; a write
    acknowledged in the last moment before may not have reached it.

    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the node that holds the database endpoint reboots
    Then "app" received no MOVING
    And every connection of "app" was dropped and connected again
    And the traffic saw only connection or timeout errors, all while the fault lasted, and recovered
    And at most 2 acknowledged writes were lost

  Scenario: FA9 the endpoint's proxy stops for a while: its connections drop, new ones are refused until it starts again, and only requests made while it was down fail
    However many requests the client tries while the proxy is down, each
    fails at once; none fails before the proxy stops or after it is back,
    and nothing written is lost: the shards never stopped.

    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database's proxy stops for 1 s
    Then every connection of "app" was dropped and connected again
    And the traffic saw only connection errors, all while the fault lasted, and recovered
    And every acknowledged write is readable

  Scenario: FA10 negative control: a client that never dials again after the proxy's outage keeps failing, and the outage claim says so
    The same outage as FA9, for a client whose connections stay down once
    dropped: its requests fail on after the proxy is back, and the claims FA9
    makes of a good client fail for it: the server holds none of its
    connections again, and its traffic fails after the fault.

    Given a client "stuck" with 2 connections and maintenance notifications enabled and these settings:
      | reconnect | off |
    And steady traffic from "stuck"
    When the database's proxy stops for 1 s
    Then the claim fails that every connection of "stuck" was dropped and connected again, saying "did not connect again"
    And the claim fails that the traffic saw only connection errors, all while the fault lasted, and recovered, saying "after the fault ended"
