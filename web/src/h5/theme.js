// Elder mode (长辈版, OUT-9) is a theme, not a second app: Vant's CSS variables through
// ConfigProvider (scope global, so toasts and dialogs follow), remembered in localStorage.
// The figures follow the MIIT 2021 guideline for elder-friendly apps: main text >= 18 px, main
// function titles larger, line height >= 1.3, main tap targets >= 60 x 60 px, contrast >= 4.5:1.
import { ref, watch } from 'vue'

const KEY = 'carehub.h5.elder'

function stored() {
  try {
    return globalThis.localStorage?.getItem(KEY) === '1'
  } catch {
    return false
  }
}

/** Whether elder mode is on (shared by every page of the app). */
export const elderMode = ref(stored())

watch(elderMode, (on) => {
  try {
    globalThis.localStorage?.setItem(KEY, on ? '1' : '0')
  } catch {
    // private mode without storage: the switch still works for this visit
  }
})

/** Normal mode: Vant's defaults, with secondary text dark enough to read (>= 4.5:1 on white). */
export const normalTheme = {
  textColor2: '#646566',
}

/** Elder mode: large type, roomy lines, 60 px tap targets, dark text and a darker blue. */
export const elderTheme = {
  // type: main text 20 px, secondary 18 px, titles 22-24 px
  fontSizeXs: '16px',
  fontSizeSm: '18px',
  fontSizeMd: '20px',
  fontSizeLg: '22px',
  lineHeightXs: '22px',
  lineHeightSm: '26px',
  lineHeightMd: '28px',
  lineHeightLg: '32px',
  // colours: on white, #1a1a1a is 17:1, #3d3d3d 11:1; white on #0b57c5 is 6.4:1
  textColor: '#1a1a1a',
  textColor2: '#3d3d3d',
  textColor3: '#4d4d4d',
  primaryColor: '#0b57c5',
  dangerColor: '#b3261e',
  successColor: '#1b6e2d',
  warningColor: '#9a4a00',
  // cells: 60 px tall at least
  cellFontSize: '20px',
  cellLineHeight: '30px',
  cellVerticalPadding: '15px',
  cellLabelFontSize: '18px',
  cellLabelLineHeight: '26px',
  cellIconSize: '24px',
  cellGroupTitleFontSize: '18px',
  cellGroupTitleLineHeight: '26px',
  // buttons and fields
  buttonDefaultHeight: '60px',
  buttonDefaultFontSize: '20px',
  buttonNormalFontSize: '20px',
  buttonLargeHeight: '60px',
  buttonSmallHeight: '44px',
  buttonSmallFontSize: '18px',
  fieldLabelWidth: '5em',
  fieldInputTextColor: '#1a1a1a',
  fieldPlaceholderTextColor: '#5c5c5c',
  // bars
  navBarHeight: '60px',
  navBarTitleFontSize: '22px',
  navBarIconColor: '#0b57c5',
  navBarTextColor: '#0b57c5',
  noticeBarFontSize: '18px',
  noticeBarHeight: '60px',
  noticeBarLineHeight: '26px',
  switchSize: '32px',
  tagFontSize: '16px',
  tagLineHeight: '22px',
  emptyDescriptionFontSize: '18px',
  toastFontSize: '20px',
  dialogMessageFontSize: '20px',
  dialogHeaderFontWeight: '600',
}
