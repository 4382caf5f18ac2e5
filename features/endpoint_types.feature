Feature: Endpoint types
  A client tells the server, in CLIENT MAINT_NOTIFICATIONS, which form of
  address it wants in MOVING: an internal or external IP address, an internal
  or external host name, or none at all (the client then reconnects to the
  address it was configured with, half-way through the grace period). With
  "auto", the client picks the form itself: a host name over TLS, an IP address
  otherwise; internal for private, loopback, link-local and CGNAT addresses,
  external for the rest.

  Background:
    Given a standalone database

  Scenario Outline: ET1-ET5 a client that asks for <type> receives it in MOVING and moves there
    Given a client "app" with 2 connections and maintenance notifications enabled and endpoint type <type>
    And steady traffic from "app"
    Then the server has maintenance notifications on for every connection of "app", with endpoint type <type>
    When the database endpoint is rebound to another node
    Then "app" receives MOVING in the form <type> asks for
    And every connection of "app" hands off exactly once
    And every connection of "app" now uses the endpoint MOVING named
    And the server sent no MOVING to a connection of "app" that arrived on the node the endpoint moved to
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

    Examples:
      | type          |
      | internal-ip   |
      | external-ip   |
      | internal-fqdn |
      | external-fqdn |
      | none          |

  Scenario: ET6 auto picks the form from TLS and the class of the configured address
    Given a client "app" with 2 connections and maintenance notifications enabled and endpoint type auto
    Then "app" asked for the endpoint type its TLS setting and address class call for, by this table:
      | TLS | address class | endpoint type |
      | off | internal      | internal-ip   |
      | off | external      | external-ip   |
      | on  | internal      | internal-fqdn |
      | on  | external      | external-fqdn |
    When the database endpoint is rebound to another node
    Then every connection of "app" hands off exactly once
    And every connection of "app" now uses the endpoint MOVING named
    And "app" can still write and read
