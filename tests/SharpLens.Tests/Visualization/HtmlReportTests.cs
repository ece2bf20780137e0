using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpLens.Visualization;
using Xunit.Abstractions;

namespace SharpLens.Tests.Visualization;

public sealed class HtmlReportTests(ITestOutputHelper output)
{
    // Tokens that break naive embedding: script end tag, quotes, markup, newline, leading space, a plotly template.
    static readonly string[] Hostile = ["</script><script>alert(1)</script>", " \"quoted\" 'x'", "<b>&amp;", "\n", " Mary", "%{x}"];

    static float[,] Pattern(int n)
    {
        var p = new float[n, n];
        for (int q = 0; q < n; q++)
            for (int k = 0; k <= q; k++) p[q, k] = 1f / (q + 1); // causal, rows sum to 1
        return p;
    }

    static HtmlReport SampleReport()
    {
        var report = new HtmlReport("IOI <direct> logit attribution");
        report.AddHeading("Logit differences");
        report.AddParagraph("a < b & \"c\"");
        report.AddTable("Logit differences", ["Prompt", "Correct", "Incorrect", "Logit Difference"],
        [
            ["When John and Mary went to the shops, John gave the bag to", ReportCell.Correct(" Mary"), ReportCell.Incorrect(" John"), ReportCell.Strong("3.337")],
        ]);
        report.AddFigure(Plots.Line("Logit difference per layer", ["embed", "0_pre", "1_pre", "final_post"],
            [new PlotSeries("logit diff", [0.1f, 0.5f, float.NaN, 3.5f])], "Layer", "Logit diff"));
        report.AddFigure(Plots.Bar("Per prompt", Hostile, [1, -2, 3, 0.5f, -0.25f, 4]));
        report.AddFigure(Plots.Heatmap("Head attribution", new float[,] { { -1.5f, 0, 2 }, { float.PositiveInfinity, 0.25f, -0.75f } },
            ["H0", "H1", "H2"], ["L0", "L1"], "Head", "Layer"));
        report.AddAttentionView(new AttentionView("Layer 0 attention", Hostile).AddHead("L0H0", Pattern(6)).AddHead("L0H1", Pattern(6)));
        report.AddAttentionView(new AttentionView("Second view", ["A", " B", " A"]).AddLayer(1, new float[2, 3, 3] { { { 1, 0, 0 }, { .5f, .5f, 0 }, { .2f, .3f, .5f } }, { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } } }));
        return report;
    }

    static JsonObject FigureJson(string html, int index)
    {
        var m = Regex.Matches(html, @"var f = (\{.*?\}); Plotly\.newPlot")[index];
        return JsonNode.Parse(m.Groups[1].Value)!.AsObject();
    }

    [Fact]
    public void PlotlyIsInlinedExactlyOnceAndNoUrlIsReferenced()
    {
        string html = SampleReport().Render();
        Assert.Equal(1, Regex.Count(html, @"plotly\.js v2\.28\.0")); // the bundle's own banner
        Assert.Equal(3, Regex.Count(html, "Plotly\\.newPlot\\(\"sl-fig-"));
        Assert.DoesNotContain("http://", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("https://", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("<script src", html);
        Assert.InRange(html.Length, 3_000_000, 5_000_000);
        // The SVG namespace plotly needs is still there, as the same JavaScript string.
        Assert.Contains(@"""http:\/\/www.w3.org/2000/svg""", html);
    }

    [Fact]
    public void NeutraliseKeepsNamespaceNamesAndDisablesAddresses()
    {
        string js = PlotlyJs.Neutralise("""a="http://www.w3.org/2000/svg";b="https://cdn.plot.ly/";/* HTTP://x.org */c="</script>";""");
        Assert.Equal("""a="http:\/\/www.w3.org/2000/svg";b="offline:cdn.plot.ly/";/* offline:x.org */c="<\/script>";""", js);
    }

    [Fact]
    public void ReportWithoutFiguresCarriesNoPlotly()
    {
        var report = new HtmlReport("text only");
        report.AddParagraph("hello");
        string html = report.Render();
        Assert.DoesNotContain("plotly.js v", html);
        Assert.True(html.Length < 10_000, $"{html.Length} chars");
    }

    [Fact]
    public void HostileTokensCannotEscapeTheirScriptOrMarkup()
    {
        string html = SampleReport().Render();
        // Every </script> in the page closes one of our own script elements: error reporter + plotly + attention library + 3 figures + 2 views.
        Assert.Equal(8, Regex.Count(html, "</script>", RegexOptions.IgnoreCase));
        Assert.Equal(8, Regex.Count(html, "<script>", RegexOptions.IgnoreCase));
        Assert.DoesNotContain("alert(1)</script>", html);
        Assert.DoesNotContain("<b>&amp;", html);
        Assert.Contains("<h1>IOI &lt;direct&gt; logit attribution</h1>", html);
        Assert.Contains("<p>a &lt; b &amp; &quot;c&quot;</p>", html);

        // The attention data round-trips: the JSON in the page decodes to exactly the original tokens.
        var m = Regex.Match(html, "slAttention\\(\"sl-attn-1\", (\\{.*?\\})\\);</script>");
        var data = JsonNode.Parse(m.Groups[1].Value)!;
        Assert.Equal(Hostile, data["tokens"]!.AsArray().Select(t => (string)t!));
        Assert.Equal(["L0H0", "L0H1"], data["heads"]!.AsArray().Select(h => (string)h!["label"]!));
        Assert.Equal(1f / 3, (float)data["heads"]![1]!["pattern"]![2]![1]!, 6);

        // In plotly text (ticks/hover) markup is escaped so "<b>" is shown, not interpreted.
        var bar = FigureJson(html, 1);
        Assert.Equal("&lt;b&gt;&amp;amp;", (string)bar["layout"]!["xaxis"]!["ticktext"]![2]!);
        Assert.Equal("x: %{x}<br>y: ", (string)bar["data"]![0]!["text"]![5]!); // a label "%{x}" is data, not template
    }

    [Fact]
    public void HeatmapIsDivergingRdBuCentredOnZero()
    {
        var fig = FigureJson(SampleReport().Render(), 2);
        var trace = fig["data"]![0]!;
        Assert.Equal("heatmap", (string)trace["type"]!);
        Assert.Equal(0, (int)trace["zmid"]!);
        var scale = trace["colorscale"]!.AsArray();
        Assert.Equal(11, scale.Count);
        Assert.Equal((0.0, "rgb(103,0,31)"), ((double)scale[0]![0]!, (string)scale[0]![1]!));    // most negative: dark red
        Assert.Equal((0.5, "rgb(247,247,247)"), ((double)scale[5]![0]!, (string)scale[5]![1]!)); // zero: white
        Assert.Equal((1.0, "rgb(5,48,97)"), ((double)scale[10]![0]!, (string)scale[10]![1]!));   // most positive: dark blue
        Assert.Equal(-1.5f, (float)trace["z"]![0]![0]!);
        Assert.Null(trace["z"]![1]![0]);                                                          // +Inf -> gap
        Assert.Equal("Head: H2<br>Layer: L0", (string)trace["text"]![0]![2]!);
        Assert.Equal("reversed", (string)fig["layout"]!["yaxis"]!["autorange"]!);
        Assert.Equal(["L0", "L1"], fig["layout"]!["yaxis"]!["ticktext"]!.AsArray().Select(t => (string)t!));
    }

    [Fact]
    public void NumbersAreInvariantAndNonFiniteBecomesNull()
    {
        var culture = Thread.CurrentThread.CurrentCulture;
        try
        {
            // A comma-decimal culture (the project runs with invariant globalization, so no "de-DE" to borrow).
            var comma = (System.Globalization.CultureInfo)System.Globalization.CultureInfo.InvariantCulture.Clone();
            comma.NumberFormat.NumberDecimalSeparator = ",";
            Thread.CurrentThread.CurrentCulture = comma;
            var fig = Plots.Line("x", [0.5f, 1.5f], [new PlotSeries("s", [2.25f, float.NegativeInfinity])]);
            string json = fig.ToJson();
            Assert.Contains("\"y\":[2.25,null]", json);
            Assert.Contains("\"x\":[0.5,1.5]", json);
            Assert.Equal("s<br>x: 0.5<br>y: ", (string)JsonNode.Parse(json)!["data"]![0]!["text"]![0]!);
        }
        finally { Thread.CurrentThread.CurrentCulture = culture; }
    }

    [Fact]
    public void RepeatedLabelsStayDistinctPoints()
    {
        var fig = Plots.Bar("tokens", [" the", " cat", " the"], [1, 2, 3]);
        Assert.Equal([0, 1, 2], fig.Traces[0]!["x"]!.AsArray().Select(v => (int)v!));
        Assert.Equal([" the", " cat", " the"], fig.Layout["xaxis"]!["ticktext"]!.AsArray().Select(t => (string)t!));
    }

    [Fact]
    public void TableCellsCarryTheSeedStyles()
    {
        string html = SampleReport().Render();
        Assert.Contains("<caption>Logit differences</caption>", html);
        Assert.Contains("<th>Logit Difference</th>", html);
        Assert.Contains("<td style=\"color:rgb(0,200,0);font-weight:bold;\"> Mary</td>", html);
        Assert.Contains("<td style=\"color:rgb(255,0,0);font-weight:bold;\"> John</td>", html);
        Assert.Contains("<td style=\"font-weight:bold;\">3.337</td>", html);
        Assert.Contains("<td>When John and Mary went to the shops, John gave the bag to</td>", html);
    }

    [Fact]
    public void BadShapesAreRejectedWithSpecificMessages()
    {
        var e = Assert.Throws<SharpLensException>(() => new AttentionView("v", ["a", "b"]).AddHead("L0H0", new float[2, 3]));
        Assert.Contains("[2, 3]", e.Message);
        Assert.Contains("[2, 2]", e.Message);
        e = Assert.Throws<SharpLensException>(() => Plots.Heatmap("h", new float[2, 3], ["a", "b"], ["r0", "r1"]));
        Assert.Contains("z columns has 3 entries but xLabels has 2", e.Message);
        e = Assert.Throws<SharpLensException>(() => new HtmlReport("r").AddTable("t", ["a", "b"], [["only one"]]));
        Assert.Contains("row 0 has 1 cells but there are 2 headers", e.Message);
        var report = new HtmlReport("r");
        report.AddAttentionView(new AttentionView("empty", ["a"]));
        Assert.Contains("no heads", Assert.Throws<SharpLensException>(report.Render).Message);
    }

    [Fact]
    public void SaveIsAtomic()
    {
        string dir = Directory.CreateTempSubdirectory("sl-report-").FullName;
        try
        {
            string path = Path.Combine(dir, "sub", "report.html");
            var good = new HtmlReport("good");
            good.AddParagraph("first version");
            good.Save(path);
            Assert.Contains("first version", File.ReadAllText(path));

            // A figure whose layout was given a NaN by hand cannot be rendered: Save must fail before touching the disk.
            var fig = Plots.Bar("b", ["a"], [1]);
            fig.Layout["width"] = JsonValue.Create(double.NaN);
            var bad = new HtmlReport("bad");
            bad.AddFigure(fig);
            var e = Assert.Throws<SharpLensException>(() => bad.Save(path));
            Assert.Contains("Figure 'b'", e.Message);
            Assert.Contains("first version", File.ReadAllText(path));                 // old report intact
            Assert.Equal(["report.html"], Directory.GetFiles(Path.Combine(dir, "sub")).Select(Path.GetFileName)); // no temp left

            string fresh = Path.Combine(dir, "never.html");
            Assert.Throws<SharpLensException>(() => bad.Save(fresh));
            Assert.False(File.Exists(fresh));
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void RendersInHeadlessChromium()
    {
        Skip.IfNot(BrowserCheck.Available, BrowserCheck.SkipReason);
        string dir = Directory.CreateTempSubdirectory("sl-report-").FullName;
        try
        {
            string path = Path.Combine(dir, "report.html");
            SampleReport().Save(path);
            var (code, text) = BrowserCheck.Run(path);
            output.WriteLine(text);
            Assert.True(code == 0, $"check-report.sh failed ({code}): {text}");
            Assert.Contains("OK (3 figures", text);
            Assert.Contains("2 attention views", text);
        }
        finally { Directory.Delete(dir, true); }
    }
}
